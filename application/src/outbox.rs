//! Writing to the outbox inside a use case's transaction, as a span of its own.

use ordership_domain::Message;
use ordership_domain::ports::{Outbox, StoreError};
use tracing::Instrument;

/// Appends `messages`, in order, to the transaction's outbox.
pub(crate) async fn append(
    outbox: &mut dyn Outbox,
    messages: &[Message],
) -> Result<(), StoreError> {
    async {
        for message in messages {
            outbox.append(message).await?;
        }
        Ok(())
    }
    .instrument(tracing::info_span!(
        "outbox.append",
        messages = messages.len()
    ))
    .await
}
