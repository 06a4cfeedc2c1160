//! A `SubscribeResponse` already encoded: the event stream encodes each
//! event once and sends the same bytes to every subscriber it passes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::encoding::{DecodeContext, WireType, encode_key, encode_varint};
use prost::{DecodeError, Message};

use crate::v1;

/// The encoding of one `leadflow.v1.SubscribeResponse`. Sent as is; decoded
/// (by a client reading it with this type) back into the same bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscribeFrame(Bytes);

impl SubscribeFrame {
    /// Encodes `response` once; clones share the bytes.
    pub fn encode(response: &v1::SubscribeResponse) -> Self {
        Self(response.encode_to_vec().into())
    }

    /// Bytes that [`SubscribeFrame::encode`] made (kept to send again).
    pub fn from_encoded(bytes: Bytes) -> Self {
        Self(bytes)
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The message these bytes encode.
    pub fn message(&self) -> Result<v1::SubscribeResponse, DecodeError> {
        v1::SubscribeResponse::decode(self.0.as_ref())
    }
}

impl Message for SubscribeFrame {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    /// Keeps each field's bytes as they came (every field of a
    /// `SubscribeResponse` is a length-delimited message).
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let mut field = Vec::new();
        prost::encoding::bytes::merge(wire_type, &mut field, buf, ctx)?;
        let mut out = BytesMut::with_capacity(self.0.len() + field.len() + 10);
        out.put_slice(&self.0);
        encode_key(tag, WireType::LengthDelimited, &mut out);
        encode_varint(field.len() as u64, &mut out);
        out.put_slice(&field);
        self.0 = out.freeze();
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> v1::SubscribeResponse {
        v1::SubscribeResponse {
            item: Some(v1::subscribe_response::Item::Event(v1::Event {
                sequence: 42,
                event_id: "e-42".to_owned(),
                traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_frame_is_sent_as_the_message_it_encodes() -> Result<(), DecodeError> {
        let message = event();
        let frame = SubscribeFrame::encode(&message);
        assert_eq!(frame.encode_to_vec(), message.encode_to_vec());
        assert_eq!(frame.encoded_len(), message.encoded_len());
        assert_eq!(frame.message()?, message);
        Ok(())
    }

    #[test]
    fn a_frame_decoded_from_the_wire_keeps_its_bytes() -> Result<(), DecodeError> {
        let message = event();
        let frame = SubscribeFrame::decode(message.encode_to_vec().as_slice())?;
        assert_eq!(frame.message()?, message);
        let checkpoint = v1::SubscribeResponse {
            item: Some(v1::subscribe_response::Item::Checkpoint(v1::Checkpoint {
                head_sequence: 7,
                at: None,
            })),
        };
        let frame = SubscribeFrame::decode(checkpoint.encode_to_vec().as_slice())?;
        assert_eq!(frame.message()?, checkpoint);
        Ok(())
    }

    #[test]
    fn a_varint_where_a_message_belongs_is_refused() {
        // Field 1 as a varint: not a SubscribeResponse.
        assert!(SubscribeFrame::decode([0x08_u8, 0x01].as_slice()).is_err());
    }
}
