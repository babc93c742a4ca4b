//! HappyFox's response shapes, read tolerantly: every field is optional, a field of an unexpected
//! type reads as absent instead of failing the whole answer, and ids may be numbers or strings.
//! The API is documented by examples only (reference/happyfox.md §3, §4), so anything stricter
//! would break on the first account that differs.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::fmt;

/// An id as HappyFox sent it: `12` or `"12"` are the same id. Serialized back as a number when it
/// is one, so the model sees integers where HappyFox uses them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

impl Id {
    pub fn as_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }
    pub fn is(&self, n: u64) -> bool {
        self.as_u64() == Some(n)
    }
}

impl From<u64> for Id {
    fn from(n: u64) -> Self {
        Id(n.to_string())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) if n.is_u64() || n.is_i64() => Ok(Id(n.to_string())),
            Value::String(s) if !s.trim().is_empty() => Ok(Id(s.trim().to_string())),
            other => Err(serde::de::Error::custom(format!("not an id: {other}"))),
        }
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.as_u64() {
            Some(n) => s.serialize_u64(n),
            None => s.serialize_str(&self.0),
        }
    }
}

/// How a field is read when HappyFox sends something unexpected: an `Option` reads as None, a
/// list keeps the items it can read. Either way the rest of the answer still reads.
pub trait Lenient: Sized {
    fn from_value(value: Value) -> Self;
}

impl<T: DeserializeOwned> Lenient for Option<T> {
    fn from_value(value: Value) -> Self {
        serde_json::from_value(value).ok()
    }
}

impl<T: DeserializeOwned> Lenient for Vec<T> {
    fn from_value(value: Value) -> Self {
        match value {
            Value::Array(items) => items
                .into_iter()
                .filter_map(|item| serde_json::from_value(item).ok())
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn read<'de, D: Deserializer<'de>, T: Lenient>(d: D) -> Result<T, D::Error> {
    Ok(T::from_value(Value::deserialize(d)?))
}

/// A struct whose every field is optional and read with `Lenient`; unknown keys are ignored.
macro_rules! tolerant {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$f:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, Deserialize)]
        pub struct $name {
            $( $(#[$f])* #[serde(default, deserialize_with = "read")] pub $field: $ty, )*
        }
    };
}

tolerant! {
    /// A status, in tickets and in `GET /statuses/`.
    pub struct Status { id: Option<Id>, name: Option<String>, behavior: Option<String>, order: Option<i64>, default: Option<bool> }
}

tolerant! {
    /// A priority, in tickets and in `GET /priorities/` (whose shape HappyFox does not document).
    pub struct Priority { id: Option<Id>, name: Option<String>, order: Option<i64>, default: Option<bool> }
}

tolerant! {
    /// A category, in tickets and in `GET /categories/`.
    pub struct Category { id: Option<Id>, name: Option<String>, description: Option<String>, public: Option<bool>, time_spent_mandatory: Option<bool> }
}

tolerant! {
    pub struct Named { name: Option<String> }
}

tolerant! {
    /// An agent: a ticket's `assigned_to`, and `GET /staff/` items.
    pub struct Staff { id: Option<Id>, name: Option<String>, email: Option<String>, active: Option<bool>, role: Option<Named>, categories: Vec<Id> }
}

tolerant! {
    pub struct Phone { #[serde(rename = "type")] kind: Option<String>, number: Option<String> }
}

tolerant! {
    /// A contact (HappyFox calls them users): a ticket's `user`, and `GET /users/` items.
    pub struct Contact {
        id: Option<Id>, name: Option<String>, email: Option<String>, phones: Vec<Phone>,
        contact_groups: Vec<Named>, custom_fields: Vec<FieldValue>,
        tickets_count: Option<i64>, pending_tickets_count: Option<i64>,
    }
}

tolerant! {
    /// A custom field's value on a ticket or contact. For a dropdown, `value` is probably the
    /// label and `value_id` the choice id (inferred, reference §4).
    pub struct FieldValue {
        id: Option<Id>, name: Option<String>, #[serde(rename = "type")] kind: Option<String>,
        value: Option<Value>, value_id: Option<Value>, compulsory_on_complete: Option<bool>,
    }
}

impl FieldValue {
    /// Whether the field holds nothing yet.
    pub fn is_empty(&self) -> bool {
        match &self.value {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.trim().is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(_) => false,
        }
    }
}

tolerant! {
    pub struct Choice { id: Option<Id>, text: Option<String> }
}

tolerant! {
    pub struct FieldCategory { category: Option<Id>, order: Option<i64> }
}

tolerant! {
    /// A ticket custom-field definition from `GET /ticket_custom_fields/`. The list spells the
    /// completion flag `compulsory_on_completed`, tickets spell it `compulsory_on_complete`.
    pub struct FieldDef {
        id: Option<Id>, name: Option<String>, #[serde(rename = "type")] kind: Option<String>,
        required: Option<bool>,
        #[serde(alias = "compulsory_on_complete")] compulsory_on_completed: Option<bool>,
        compulsory_on_move: Option<bool>, visible_to_staff_only: Option<bool>,
        choices: Vec<Choice>, categories: Vec<FieldCategory>,
    }
}

impl FieldDef {
    /// This field's position in `category`'s form, or None when it does not apply there.
    pub fn order_in(&self, category: &Id) -> Option<i64> {
        self.categories
            .iter()
            .find(|c| c.category.as_ref() == Some(category))
            .map(|c| c.order.unwrap_or(i64::MAX))
    }
}

tolerant! {
    pub struct Attachment { filename: Option<String> }
}

tolerant! {
    pub struct Message {
        text: Option<String>, html: Option<String>, message_type: Option<String>,
        customer_updated: Option<bool>, attachments: Vec<Attachment>,
    }
}

tolerant! {
    /// Who made an update: `type` is `staff`, `user` (the contact) or `smartrule`.
    pub struct By { id: Option<Id>, #[serde(rename = "type")] kind: Option<String>, name: Option<String> }
}

tolerant! {
    /// `{old, new, old_name, new_name}`; older accounts only send `old`/`new`.
    pub struct Change { old: Option<Value>, new: Option<Value>, old_name: Option<String>, new_name: Option<String> }
}

tolerant! {
    pub struct Update {
        update_id: Option<Id>, timestamp: Option<String>, by: Option<By>, message: Option<Message>,
        status_change: Option<Change>, priority_change: Option<Change>,
        assignee_change: Option<Change>, category_change: Option<Change>,
        due_date_change: Option<Change>, time_spent: Option<i64>,
    }
}

tolerant! {
    /// A ticket from `GET /ticket/<id>/` or a `GET /tickets/` page (same keys).
    pub struct Ticket {
        id: Option<Id>, display_id: Option<String>, subject: Option<String>,
        first_message: Option<String>, status: Option<Status>, priority: Option<Priority>,
        category: Option<Category>, user: Option<Contact>, assigned_to: Option<Staff>,
        custom_fields: Vec<FieldValue>, tags: Option<Value>, due_date: Option<String>,
        created_at: Option<String>, last_modified: Option<String>,
        last_staff_reply_at: Option<String>, last_user_reply_at: Option<String>,
        messages_count: Option<i64>, sla_breaches: Option<i64>, time_spent: Option<i64>,
        unresponded: Option<bool>, updates: Vec<Update>,
    }
}

tolerant! {
    pub struct PageInfo { last_index: Option<i64>, page_count: Option<i64> }
}

tolerant! {
    /// The paginated envelope of `/tickets/` and `/users/`.
    pub struct Page { page_info: Option<PageInfo>, data: Vec<Value> }
}

impl Ticket {
    /// Tags are documented as a comma-separated string; an array is accepted too.
    pub fn tag_list(&self) -> Vec<String> {
        match &self.tags {
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn category_id(&self) -> Option<&Id> {
        self.category.as_ref()?.id.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_read_from_numbers_or_strings_and_print_as_numbers() {
        let a: Id = serde_json::from_value(json!(12)).unwrap();
        let b: Id = serde_json::from_value(json!("12")).unwrap();
        assert_eq!(a, b);
        assert_eq!(serde_json::to_value(&b).unwrap(), json!(12));
        let odd: Id = serde_json::from_value(json!("BL-7")).unwrap();
        assert_eq!(serde_json::to_value(&odd).unwrap(), json!("BL-7"));
    }

    #[test]
    fn a_field_of_an_unexpected_type_reads_as_absent_not_as_a_failure() {
        let t: Ticket = serde_json::from_value(json!({
            "id": "142", "subject": 7, "status": "open", "priority": {"id": 3, "name": "High"},
            "tags": ["a", "b"], "updates": [{"update_id": 1}, "garbage"], "brand_new_key": {}
        }))
        .unwrap();
        assert!(t.id.unwrap().is(142));
        assert_eq!(t.subject, None);
        assert!(t.status.is_none());
        assert_eq!(t.priority.unwrap().name.as_deref(), Some("High"));
        assert_eq!(t.updates.len(), 1);
        let t: Ticket = serde_json::from_value(json!({"tags": "refund, payments,"})).unwrap();
        assert_eq!(t.tag_list(), ["refund", "payments"]);
    }

    #[test]
    fn both_spellings_of_the_completion_flag_are_read() {
        let d: FieldDef =
            serde_json::from_value(json!({"id": 1, "compulsory_on_complete": true})).unwrap();
        assert_eq!(d.compulsory_on_completed, Some(true));
    }
}
