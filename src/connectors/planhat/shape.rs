//! What the model gets back: Planhat records trimmed to the fields a workflow uses, ids as
//! strings, long texts cut. Planhat records carry dozens of auto-generated fields (`__v`, usage
//! roll-ups, UI state) that would only spend the model's context.

use serde_json::{Map, Value};

/// Longest free text kept (NPS comments and ticket snippets are quoted word for word below this).
const MAX_TEXT: usize = 1500;

/// Fields that hold ids (or arrays of ids): always strings, whatever Planhat sent.
const ID_FIELDS: &[&str] = &[
    "_id",
    "cId",
    "euId",
    "companyId",
    "ownerId",
    "owner",
    "coOwner",
    "campaignId",
    "hProfile",
    "companyIds",
    "enduserIds",
    "endusers",
    "users",
    "followers",
];

/// `keys` of `record` that are present and not null, ids normalized, texts capped.
pub fn pick(record: &Value, keys: &[&str]) -> Value {
    let mut out = Map::new();
    for key in keys {
        match record.get(*key) {
            None | Some(Value::Null) => {}
            Some(v) if ID_FIELDS.contains(key) => {
                out.insert((*key).to_string(), ids(v));
            }
            Some(Value::String(s)) => {
                out.insert((*key).to_string(), Value::String(cap(s)));
            }
            Some(v) => {
                out.insert((*key).to_string(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// An id as a string: Planhat sends strings, but a list may embed `{_id, nickName}` objects
/// (company owners) and numbers appear in imported data.
pub fn id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) => o.get("_id").or_else(|| o.get("id")).and_then(id),
        _ => None,
    }
}

fn ids(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| match i {
                    // Ticket endusers are `{id, name}`: keep the name, normalize the id.
                    Value::Object(o) if o.contains_key("name") => {
                        let mut o = o.clone();
                        if let Some(i) = id(i) {
                            o.insert("id".into(), i.into());
                        }
                        o.remove("_id");
                        Value::Object(o)
                    }
                    other => id(other).map(Value::String).unwrap_or(Value::Null),
                })
                .collect(),
        ),
        other => id(other).map(Value::String).unwrap_or(Value::Null),
    }
}

pub fn cap(s: &str) -> String {
    match s.char_indices().nth(MAX_TEXT) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// A string field of a record (ids coerced).
pub fn str_of(record: &Value, key: &str) -> Option<String> {
    record.get(key).and_then(id)
}

pub fn company(c: &Value) -> Value {
    pick(
        c,
        &[
            "_id",
            "name",
            "status",
            "phase",
            "phaseSince",
            "h",
            "hDiff",
            "csmScore",
            "mrr",
            "arr",
            "nrrTotal",
            "renewalMrr",
            "renewalArr",
            "renewalDate",
            "renewalDaysFromNow",
            "autoRenews",
            "customerFrom",
            "customerTo",
            "lastRenewal",
            "owner",
            "coOwner",
            "externalId",
            "sourceId",
            "domains",
            "tags",
            "products",
            "nps",
            "lastActive",
            "lastTouch",
            "lastTouchByType",
            "nextTouch",
            "custom",
        ],
    )
}

pub fn nps(n: &Value) -> Value {
    pick(
        n,
        &[
            "_id",
            "cId",
            "euId",
            "email",
            "score",
            "comment",
            "dateSent",
            "dateAnswered",
            "source",
            "campaignId",
        ],
    )
}

pub fn task(t: &Value) -> Value {
    let mut out = pick(
        t,
        &[
            "_id",
            "mainType",
            "companyId",
            "companyName",
            "action",
            "type",
            "status",
            "ownerId",
            "startTime",
            "endTime",
            "dateDone",
            "isArchived",
            "endusers",
            "users",
            "externalId",
            "createdAt",
        ],
    );
    // The plain-text `snippet` is shorter than the HTML `description`.
    if let Some(text) = t
        .get("snippet")
        .or_else(|| t.get("description"))
        .and_then(Value::as_str)
    {
        out["description"] = Value::String(cap(text));
    }
    out
}

pub fn ticket(t: &Value) -> Value {
    let mut out = pick(
        t,
        &[
            "_id",
            "companyId",
            "companyName",
            "subject",
            "title",
            "snippet",
            "status",
            "isOpen",
            "severity",
            "priority",
            "type",
            "email",
            "endusers",
            "date",
            "createDate",
            "updateDate",
            "url",
            "tags",
        ],
    );
    if out.get("snippet").is_none()
        && let Some(d) = t.get("description").and_then(Value::as_str)
    {
        out["snippet"] = Value::String(cap(d));
    }
    out
}

pub fn issue(i: &Value) -> Value {
    pick(
        i,
        &[
            "_id",
            "title",
            "description",
            "status",
            "priority",
            "companyIds",
            "archived",
            "sourceUrl",
            "arrCombined",
            "createdAt",
            "updatedAt",
        ],
    )
}

pub fn enduser(e: &Value) -> Value {
    pick(
        e,
        &[
            "_id",
            "name",
            "firstName",
            "lastName",
            "email",
            "position",
            "companyId",
            "companyName",
            "primary",
            "featured",
            "archived",
            "nps",
            "npsComment",
            "npsDate",
            "lastActive",
        ],
    )
}

pub fn user(u: &Value) -> Value {
    let mut out = pick(
        u,
        &[
            "_id",
            "firstName",
            "lastName",
            "nickName",
            "email",
            "isHidden",
            "removed",
            "inactive",
        ],
    );
    if let Some(roles) = u.get("roles").and_then(Value::as_array) {
        let names: Vec<Value> = roles
            .iter()
            .filter_map(|r| r.get("name").or(Some(r)).and_then(Value::as_str))
            .map(|s| Value::String(s.to_string()))
            .collect();
        out["roles"] = Value::Array(names);
    }
    out
}

pub fn churn(c: &Value) -> Value {
    pick(
        c,
        &[
            "_id",
            "companyId",
            "companyName",
            "churnDate",
            "reasons",
            "products",
            "arr",
            "value",
            "currency",
            "onlyDowngrade",
            "comment",
            "custom",
        ],
    )
}

pub fn opportunity(o: &Value) -> Value {
    pick(
        o,
        &[
            "_id",
            "companyId",
            "companyName",
            "title",
            "salesStage",
            "status",
            "mrr",
            "arr",
            "nrr",
            "_currency",
            "contractLength",
            "probability",
            "closeDate",
            "dealDate",
            "landingDate",
            "ownerId",
            "custom",
        ],
    )
}
