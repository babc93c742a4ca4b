//! The normalized event every source adapter produces, and the newtypes that name things in it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_newtype!(
    /// The sender's id for one event, unique within its source: a retry of the same delivery carries the same id.
    EventId
);
string_newtype!(
    /// One upstream instance (a HappyFox subdomain, a Planhat tenant): the unit of serialization and rate limits.
    AccountId
);
string_newtype!(
    /// A configured webhook endpoint, served at `/webhooks/{name}`.
    SourceName
);

/// Who made the change an event reports, when the payload says so. Used to drop our own echoes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The sender's word for the kind of actor: `staff`, `user`, `smartrule`, ...
    pub kind: String,
    /// The actor's id as a string: upstream ids drift between numbers and strings.
    pub id: String,
}

/// A verified, normalized webhook event, ready to be stored.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: EventId,
    pub source: SourceName,
    /// Dotted kind such as `happyfox.ticket.created` or `planhat.nps.submitted`: what handlers subscribe to.
    pub kind: String,
    pub account: AccountId,
    /// What the event is about (a ticket id, a company id): the debounce key's default.
    pub subject: String,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub actor: Option<Actor>,
    /// The body exactly as the sender signed it; parsed again only where needed.
    pub payload: String,
}
