//! `ordership dlq`: an operator's hands on the dead letters of one service's consumers.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::bail;
use ordership_application::dead_letters::{list, purge, redrive, show};
use ordership_domain::ports::{
    DeadLetter, DeadLetterQuery, DeadLetterSelection, Transaction, UnitOfWork,
};
use ordership_postgres::{PgDeliveryStore, PgOrderStore};
use serde_json::json;

use crate::cli::{CommonArgs, DlqAction, DlqSelection, ServiceName};
use crate::wiring::postgres;

fn summary(l: &DeadLetter) -> serde_json::Value {
    let m = &l.message;
    json!({
        "id": l.id, "consumer": l.consumer, "message_id": m.id.to_string(), "topic": m.topic,
        "key": m.key, "type": m.message_type, "reason": l.reason, "attempts": l.attempts,
        "dead_at": l.dead_at, "redriven_at": l.redriven_at,
    })
}

fn selection(which: &DlqSelection) -> anyhow::Result<DeadLetterSelection> {
    Ok(
        match (which.ids.as_slice(), which.since, which.until, which.all) {
            ([_, ..], None, None, false) => DeadLetterSelection::Ids(which.ids.clone()),
            ([], None, None, true) => DeadLetterSelection::All,
            ([], from, to, false) if from.is_some() || to.is_some() => {
                DeadLetterSelection::Between {
                    from: from.unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
                    to: to.unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
                }
            }
            _ => bail!("say which dead letters: --id N…, --since/--until TIME, or --all"),
        },
    )
}

/// # Errors
/// No database, a bad selection, or a store that fails.
pub async fn run(args: &CommonArgs, service: ServiceName, action: DlqAction) -> anyhow::Result<()> {
    let pool = postgres::connect(args, "dlq")?;
    let mode = postgres::outbox_mode(args);
    // Only the dead letters and the outbox are used: either service's store, as a plain one.
    let store: Arc<dyn UnitOfWork<dyn Transaction>> = match service {
        ServiceName::Order => Arc::new(PgOrderStore::new(pool).with_outbox_mode(mode)),
        ServiceName::Delivery => Arc::new(PgDeliveryStore::new(pool).with_outbox_mode(mode)),
    };
    let mut out = std::io::stdout().lock();
    match action {
        DlqAction::List {
            consumer,
            all,
            after,
            limit,
        } => {
            let query = DeadLetterQuery {
                consumer,
                include_redriven: all,
                after,
                limit: limit.clamp(1, 10_000),
            };
            for letter in list(store.as_ref(), &query).await? {
                writeln!(out, "{}", summary(&letter))?;
            }
        }
        DlqAction::Show { id } => {
            let Some(letter) = show(store.as_ref(), id).await? else {
                bail!("no dead letter {id}");
            };
            let m = &letter.message;
            let mut shown = summary(&letter);
            shown["headers"] = json!({
                "source": m.source, "correlation_id": m.correlation_id,
                "causation_id": m.causation_id.map(|c| c.to_string()),
                "traceparent": m.traceparent, "time": m.occurred_at,
            });
            shown["payload"] = m.payload.clone();
            writeln!(out, "{}", serde_json::to_string_pretty(&shown)?)?;
        }
        DlqAction::Redrive { which } => {
            let chosen = selection(&which)?;
            let sent = redrive(
                store.as_ref(),
                which.consumer.as_deref(),
                &chosen,
                chrono::Utc::now(),
            )
            .await?;
            writeln!(out, "{} dead letters sent back to their topics", sent.len())?;
        }
        DlqAction::Purge { which } => {
            let chosen = selection(&which)?;
            let n = purge(store.as_ref(), which.consumer.as_deref(), &chosen).await?;
            writeln!(out, "{n} dead letters deleted")?;
        }
    }
    Ok(())
}
