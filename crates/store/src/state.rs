//! A lead's state as stored: a format byte, then the domain's `Lead` in that
//! format. Format 1 is MessagePack with structs as arrays (no field names),
//! about a third the size of the JSON it replaces and several times cheaper
//! to read and write.
//!
//! How the state grows: a field added at the end of a struct with
//! `#[serde(default)]` reads as its default from a state written before it
//! (an array that ends early), so most additions need no new format and no
//! rewrite of stored rows. A change that cannot be said that way (a field
//! removed or reordered, a type changed) takes a new format byte and a
//! decoder for the old one here; rows are rewritten in the newest format at
//! their next write. Rows written before format 1 hold JSON in the `state`
//! column and are read from it.

use leadflow_domain::Lead;

use crate::error::StoreError;

/// The format written.
const PACKED_V1: u8 = 1;

/// The state to store.
pub(crate) fn pack(id: &str, lead: &Lead) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(512);
    out.push(PACKED_V1);
    rmp_serde::encode::write(&mut out, lead).map_err(|e| StoreError::corrupt("leads", id, e))?;
    Ok(out)
}

/// The state stored: packed if `packed` is there, else the JSON of `json`.
pub(crate) fn unpack(id: &str, packed: Option<&[u8]>, json: &str) -> Result<Lead, StoreError> {
    match packed {
        None => serde_json::from_str(json).map_err(|e| StoreError::corrupt("leads", id, e)),
        Some([PACKED_V1, rest @ ..]) => {
            rmp_serde::from_slice(rest).map_err(|e| StoreError::corrupt("leads", id, e))
        }
        Some([format, ..]) => Err(StoreError::corrupt(
            "leads",
            id,
            format!("state format {format} is newer than this leadflow"),
        )),
        Some([]) => Err(StoreError::corrupt("leads", id, "empty packed state")),
    }
}

/// The profile's attributes as JSON, for the `profile` column.
pub(crate) fn profile_json(id: &str, lead: &Lead) -> Result<String, StoreError> {
    serde_json::to_string(&lead.profile).map_err(|e| StoreError::corrupt("leads", id, e))
}
