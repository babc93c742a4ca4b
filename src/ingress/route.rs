//! Routing, the last step of accepting an event: which handlers it starts or joins, decided
//! before the ingest transaction so the commit does no matching. Pure: no I/O, no clock.

use super::select::Reads;
use crate::config::AccountConfig;
use crate::handler::{Handler, HandlerSet};
use crate::kernel::event::{Actor, Event};
use crate::store::{Disposition, Route};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub struct EventRouter {
    handlers: Arc<HandlerSet>,
    /// Per account, the identity hookwise writes as: its own echoes are not routed.
    bots: HashMap<String, Actor>,
    default_max_attempts: u32,
}

impl EventRouter {
    pub fn new(
        handlers: Arc<HandlerSet>,
        accounts: &BTreeMap<String, AccountConfig>,
        default_max_attempts: u32,
    ) -> Self {
        let bots = accounts
            .iter()
            .filter_map(|(name, account)| {
                let id = account.bot_staff_id?;
                Some((
                    name.clone(),
                    Actor {
                        kind: "staff".into(),
                        id: id.to_string(),
                    },
                ))
            })
            .collect();
        Self {
            handlers,
            bots,
            default_max_attempts,
        }
    }

    pub fn handlers(&self) -> &Arc<HandlerSet> {
        &self.handlers
    }

    /// What `decide` reads of a payload: every handler's pointers (disabled ones too: cheap,
    /// and `replay --no-llm` explains them).
    pub fn reads(&self) -> Reads {
        let mut reads = Reads::nothing();
        for pointer in self.handlers.iter().flat_map(Handler::payload_pointers) {
            reads.pointer(pointer);
        }
        reads
    }

    pub fn decide(&self, event: &Event, payload: &Value) -> Disposition {
        if let (Some(actor), Some(bot)) = (&event.actor, self.bots.get(event.account.as_str()))
            && actor == bot
        {
            return Disposition::Ignore(format!(
                "echo of hookwise's own write ({} {} is this account's bot identity)",
                bot.kind, bot.id
            ));
        }
        let routes = self
            .handlers
            .iter()
            .filter(|h| h.matches(&event.kind, payload))
            .map(|h| self.route(h, event, payload))
            .collect();
        Disposition::Route(routes)
    }

    fn route(&self, handler: &Handler, event: &Event, payload: &Value) -> Route {
        let (period, max_wait, subject) = match &handler.debounce {
            Some(d) => (
                d.period,
                d.max_wait,
                handler.debounce_subject(&event.subject, payload),
            ),
            None => (
                Default::default(),
                Default::default(),
                event.subject.clone(),
            ),
        };
        Route {
            handler: handler.name.to_string(),
            subject,
            period_ms: period.as_millis() as i64,
            max_wait_ms: max_wait.as_millis() as i64,
            max_attempts: handler.max_attempts.unwrap_or(self.default_max_attempts),
        }
    }
}
