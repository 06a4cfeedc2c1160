//! Analytics: the funnel of a period, computed by the domain from the
//! stage histories the store reads.

use leadflow_domain::analytics::funnel::{self, Funnel, Grouping, Query};

use crate::Engine;
use crate::error::EngineError;

impl Engine {
    /// The funnel of `query.period` in `ws`; zeros for a quiet period or an
    /// empty workspace.
    pub async fn funnel(&self, ws: &str, query: &Query) -> Result<Funnel, EngineError> {
        let channels = query.grouping == Grouping::SourceChannel || query.source_channel.is_some();
        let histories = self.store.funnel_histories(ws, query.period, channels).await?;
        Ok(funnel::funnel(&histories, query))
    }
}
