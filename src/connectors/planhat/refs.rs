//! Ids are what they claim to be. Every Planhat id has the same shape (a 24-hex ObjectId), so a
//! company id passed as an enduser id looks fine and Planhat stores the dangling reference
//! without complaint. Before a write, each referenced id is looked up at its own model's
//! endpoint; one that is not found there is refused with a hint of where such ids come from.

use super::{Planhat, segment, shape};
use crate::tools::{ToolContext, ToolError};
use crate::upstream::Request;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use std::fmt;

/// The JSON Schema of an ObjectId argument.
pub fn object_id_schema(description: &str) -> Value {
    json!({"type": "string", "pattern": "^[0-9a-fA-F]{24}$", "description": description})
}

/// A Planhat `_id`: 24 hex characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectId(String);

impl ObjectId {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "{s:?} is not a Planhat id (24 hexadecimal characters)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ObjectId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// The models a write may reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Company,
    Enduser,
    User,
    Opportunity,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Company => "/companies",
            Kind::Enduser => "/endusers",
            Kind::User => "/users",
            Kind::Opportunity => "/opportunities",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Company => "company",
            Kind::Enduser => "enduser (customer contact)",
            Kind::User => "user (team member)",
            Kind::Opportunity => "opportunity",
        }
    }

    /// Where the model finds ids of this kind.
    fn hint(self) -> &'static str {
        match self {
            Kind::Company => {
                "company ids are a company's `_id`, an NPS record's `cId`, or the `companyId` of a task, ticket or enduser"
            }
            Kind::Enduser => {
                "enduser ids are an enduser's `_id` (planhat.list_endusers) or an NPS record's `euId`"
            }
            Kind::User => {
                "user ids are a team member's `_id` (planhat.list_users) or a company's `owner`/`coOwner`"
            }
            Kind::Opportunity => "opportunity ids are an opportunity's `_id`",
        }
    }
}

impl Planhat {
    /// The record `id` names at `kind`'s endpoint, or a refusal naming the argument (`field`).
    pub(super) async fn lookup(
        &self,
        ctx: &ToolContext,
        kind: Kind,
        field: &str,
        id: &ObjectId,
    ) -> Result<Value, ToolError> {
        let path = format!("{}/{}", kind.path(), segment(id.as_str()));
        let refused = |why: String| {
            ToolError::Rejected(format!(
                "`{field}` {id} is not a Planhat {} ({why}); {}",
                kind.noun(),
                kind.hint()
            ))
        };
        match self.get(ctx, Request::get(&path)).await {
            // Tolerant of how "not found" looks: 404, 400 for a cast error, or a 200 carrying
            // nothing (or something else) are all "not this kind of record".
            Ok(body) => match shape::str_of(&body, "_id") {
                Some(found) if found.eq_ignore_ascii_case(id.as_str()) => Ok(body),
                _ => Err(refused(format!("GET {path} found no such record"))),
            },
            Err(e @ (ToolError::Rejected(_) | ToolError::Refused { .. })) => {
                Err(refused(format!("GET {path}: {e}")))
            }
            Err(e) => Err(e),
        }
    }

    /// An active team member: hookwise does not assign work to someone who cannot do it.
    pub(super) async fn active_user(
        &self,
        ctx: &ToolContext,
        field: &str,
        id: &ObjectId,
    ) -> Result<(), ToolError> {
        let user = self.lookup(ctx, Kind::User, field, id).await?;
        for flag in ["removed", "inactive"] {
            if user.get(flag).and_then(Value::as_bool) == Some(true) {
                return Err(ToolError::Rejected(format!(
                    "`{field}` {id} is a {flag} Planhat user: leave `{field}` out (or pick an active user from planhat.list_users)"
                )));
            }
        }
        Ok(())
    }

    /// An enduser of `company`: a contact of another customer must not be linked.
    pub(super) async fn enduser_of(
        &self,
        ctx: &ToolContext,
        field: &str,
        id: &ObjectId,
        company: &ObjectId,
    ) -> Result<(), ToolError> {
        let enduser = self.lookup(ctx, Kind::Enduser, field, id).await?;
        match shape::str_of(&enduser, "companyId") {
            Some(c) if !c.eq_ignore_ascii_case(company.as_str()) => Err(ToolError::Rejected(
                format!("`{field}` {id} is an enduser of company {c}, not of companyId {company}"),
            )),
            _ => Ok(()),
        }
    }
}
