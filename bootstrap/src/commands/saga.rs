//! `ordership saga`: an operator's hands on fulfilment sagas, straight on the order service's
//! database — what `/sagas` offers over HTTP, as JSON in the same shapes.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use ordership_application::{SagaAction, SagaOperations};
use ordership_domain::ports::SagaQuery;
use ordership_domain::saga::OperatorAction;
use ordership_domain::{OrderId, SagaPolicy, SagaState};
use ordership_http::dto::OrderResponse;
use ordership_http::sagas::{SagaDetail, SagaStep, SagaSummary};
use ordership_memory::{SystemClock, UuidV7Ids};
use ordership_postgres::PgOrderStore;

use crate::cli::{CommonArgs, OperatorArgs, SagaCommand};
use crate::wiring::postgres;

/// # Errors
/// No database, a bad argument, a store that fails, or an action the saga's state refuses.
pub async fn run(args: &CommonArgs, command: SagaCommand) -> anyhow::Result<()> {
    let pool = postgres::connect(args, "saga")?;
    let operations = SagaOperations::new(
        Arc::new(PgOrderStore::new(pool)),
        Arc::new(SystemClock),
        Arc::new(UuidV7Ids),
        SagaPolicy {
            reply_timeout: args.reply_timeout,
            ..SagaPolicy::default()
        },
    );
    let mut out = std::io::stdout().lock();
    match command {
        SagaCommand::List {
            state,
            older_than,
            after,
            limit,
        } => {
            let state = state
                .as_deref()
                .map(SagaState::parse)
                .transpose()
                .context("--state")?;
            let updated_before = older_than
                .map(chrono::Duration::from_std)
                .transpose()
                .context("--older-than")?
                .map(|age| chrono::Utc::now() - age);
            let query = SagaQuery {
                state,
                updated_before,
                after: after.map(OrderId::from_uuid),
                limit: limit.clamp(1, 10_000),
            };
            for saga in operations.list(&query).await? {
                writeln!(out, "{}", serde_json::to_string(&SagaSummary::from(&saga))?)?;
            }
        }
        SagaCommand::Show { order_id } => {
            let (view, steps) = operations.history(OrderId::from_uuid(order_id)).await?;
            let detail = SagaDetail {
                order: OrderResponse::from(&view),
                history: steps.iter().map(SagaStep::from).collect(),
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&detail)?)?;
        }
        SagaCommand::Retry { order_id, why } => {
            act(&operations, order_id, OperatorAction::Retry, &why, &mut out).await?;
        }
        SagaCommand::Compensate { order_id, why } => {
            let action = OperatorAction::ForceCompensation;
            act(&operations, order_id, action, &why, &mut out).await?;
        }
    }
    Ok(())
}

async fn act(
    operations: &SagaOperations,
    order_id: uuid::Uuid,
    action: OperatorAction,
    why: &OperatorArgs,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    if why.reason.trim().is_empty() || why.actor.trim().is_empty() {
        bail!("--actor and --reason must say who acts and why");
    }
    let act = SagaAction {
        action,
        actor: &why.actor,
        reason: &why.reason,
    };
    let view = operations.act(OrderId::from_uuid(order_id), act).await?;
    writeln!(
        out,
        "{}",
        serde_json::to_string(&OrderResponse::from(&view))?
    )?;
    Ok(())
}
