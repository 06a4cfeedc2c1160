//! Retries recognised by `request_id`: the first result of a method is
//! kept under its name and answered again; the same id with other content
//! is refused.

use leadflow_domain::Timestamp;
use leadflow_store::Tx;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::EngineError;
use crate::model::{Method, Request};

/// The first result of this request id, if it was seen; the same id with
/// other content is refused.
pub(crate) async fn replay<T: DeserializeOwned>(
    tx: &Tx,
    req: &Request,
    method: Method,
) -> Result<Option<T>, EngineError> {
    let Some(request_id) = &req.request_id else {
        return Ok(None);
    };
    let Some(stored) = tx.stored_result(&req.workspace, request_id).await? else {
        return Ok(None);
    };
    if stored.method != method.as_str() || stored.fingerprint != req.fingerprint {
        return Err(EngineError::invalid(
            "REQUEST_ID_REUSED",
            "request_id",
            format!(
                "request id {request_id:?} was already used at {} for a different {} request",
                stored.created_at, stored.method
            ),
        ));
    }
    serde_json::from_str(&stored.response)
        .map(Some)
        .map_err(|e| EngineError::Internal(format!("stored result of {request_id:?} does not decode: {e}")))
}

pub(crate) async fn save<T: Serialize>(
    tx: &Tx,
    req: &Request,
    method: Method,
    result: &T,
    now: Timestamp,
) -> Result<(), EngineError> {
    let Some(request_id) = &req.request_id else {
        return Ok(());
    };
    let response = serde_json::to_string(result).map_err(|e| EngineError::Internal(e.to_string()))?;
    tx.save_result(
        &req.workspace,
        request_id,
        &leadflow_store::StoredResult {
            method: method.as_str().to_owned(),
            fingerprint: req.fingerprint.clone(),
            response,
            created_at: now,
        },
    )
    .await?;
    Ok(())
}
