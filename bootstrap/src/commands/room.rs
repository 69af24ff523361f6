//! `ordership room`: an operator's hands on waiting rooms, straight on the order service's
//! database and the queue's Redis — what `/waiting-rooms` offers over HTTP.

use std::io::Write as _;

use anyhow::{Context as _, bail};
use ordership_domain::ports::WaitingRoomStore as _;
use ordership_domain::waiting_room::RoomId;
use ordership_postgres::PgWaitingRoomStore;
use serde_json::json;

use crate::cli::{CommonArgs, RoomCommand};
use crate::wiring::{postgres, redis};

/// # Errors
/// No database, a bad room id, an unknown room, or a store or queue that fails.
pub async fn run(args: &CommonArgs, command: RoomCommand) -> anyhow::Result<()> {
    let pool = postgres::connect(args, "room")?;
    let store = PgWaitingRoomStore::new(pool);
    match command {
        RoomCommand::Delete { room } => {
            let id = RoomId::parse(&room).map_err(|e| anyhow::anyhow!("{room:?}: {e}"))?;
            if store.get(&id).await?.is_none() {
                bail!("no waiting room {id}");
            }
            // The queue first: a queue that cannot be reached leaves the room, to delete again.
            if let Some(redis) = redis::connect(args).await? {
                redis
                    .queue
                    .expire(&id, args.waiting_room_key_ttl)
                    .await
                    .context("setting the room's queue to expire")?;
            }
            let deleted = store.delete(&id).await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{}",
                json!({ "room": id.as_str(), "deleted": deleted })
            )?;
        }
    }
    Ok(())
}
