//! The fake's HappyFox behaviour: the documented endpoints over in-memory tickets and lists.
//!
//! Where HappyFox documents a behaviour, the fake does that; where it does not (the status of a
//! keyed validation error, 404 bodies, success bodies of notes and custom fields), the fake picks
//! the answer a tolerant client must survive: the keyed error inside a 200, an HTML 404.

use crate::support::repo_path;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub struct Data {
    pub tickets: BTreeMap<u64, Value>,
    /// `categories`, `ticket_custom_fields`, `statuses`, `priorities`, `staff`: bare arrays.
    pub lists: BTreeMap<String, Value>,
    users: Vec<Value>,
    next_update_id: u64,
    /// Set: a GET of a ticket the fake does not hold answers a copy of this ticket under the
    /// asked id instead of 404 (for a real model, which does not always copy an id right).
    pub stand_in: Option<u64>,
}

fn testdata(name: &str) -> Value {
    let path = repo_path(&format!("testdata/happyfox/{name}"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

impl Data {
    /// Tickets 142 (Billing, assigned, four updates) and 141 (Billing, new) from the fixtures, and
    /// 150 (Technical Support, whose mandatory "Product Area" is empty).
    pub fn load() -> Data {
        let mut data = Data {
            tickets: BTreeMap::new(),
            lists: BTreeMap::new(),
            users: testdata("users_response.json")["data"]
                .as_array()
                .unwrap()
                .clone(),
            next_update_id: 10_000,
            stand_in: None,
        };
        for name in [
            "categories",
            "ticket_custom_fields",
            "statuses",
            "priorities",
            "staff",
        ] {
            data.lists
                .insert(name.into(), testdata(&format!("{name}_response.json")));
        }
        data.tickets
            .insert(142, testdata("ticket_detail_response.json"));
        let mut t141 = testdata("tickets_list_response.json")["data"][1].clone();
        data.tickets.insert(141, t141.clone());
        t141["id"] = json!(150);
        t141["display_id"] = json!("#TS00000150");
        t141["subject"] = json!("The app crashes when I log in");
        t141["first_message"] =
            json!("Since the last update the iOS app closes right after login.");
        t141["category"] = data.find("categories", 5).unwrap();
        t141["custom_fields"] = json!(data.fields_for(5, &json!([])));
        data.tickets.insert(150, t141);
        data
    }

    fn find(&self, list: &str, id: u64) -> Option<Value> {
        self.lists[list]
            .as_array()?
            .iter()
            .find(|item| item["id"].as_u64() == Some(id))
            .cloned()
    }

    /// A ticket's `custom_fields` for `category`, keeping the values of `old` for fields that stay.
    fn fields_for(&self, category: u64, old: &Value) -> Vec<Value> {
        let mut fields: Vec<(i64, Value)> = Vec::new();
        for def in self.lists["ticket_custom_fields"].as_array().unwrap() {
            let Some(link) = def["categories"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["category"].as_u64() == Some(category))
            else {
                continue;
            };
            let kept = old
                .as_array()
                .and_then(|o| o.iter().find(|f| f["id"] == def["id"]).cloned());
            fields.push((
                link["order"].as_i64().unwrap_or(0),
                kept.unwrap_or_else(|| {
                    json!({
                        "id": def["id"], "name": def["name"], "type": def["type"], "value": null,
                        "value_id": null, "visible_to_staff_only": def["visible_to_staff_only"],
                        "compulsory_on_complete": def["compulsory_on_completed"],
                    })
                }),
            ));
        }
        fields.sort_by_key(|(order, _)| *order);
        fields.into_iter().map(|(_, f)| f).collect()
    }
}

pub fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [("content-type", "text/html")],
        "<h1>Not Found</h1>",
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// The documented list shape: `{"error": [{"field": ..., "errors": [...]}]}` with 400.
fn invalid(field: &str, message: &str) -> Refusal {
    Box::new(
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": [{"field": field, "errors": [message]}]})),
        )
            .into_response(),
    )
}

fn missing() -> Refusal {
    Box::new(not_found())
}

/// A refusal short-circuits with `?`; boxed because a `Response` is large.
type Refusal = Box<Response>;
type Answer = Result<Response, Refusal>;

pub fn dispatch(
    data: &mut Data,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    body: &Value,
) -> Response {
    // Every documented path ends in `/`; a missing slash is a client bug the fake makes visible.
    let Some(inner) = path.strip_prefix('/').and_then(|p| p.strip_suffix('/')) else {
        return not_found();
    };
    let segments: Vec<&str> = inner.split('/').collect();
    let answer: Answer = match (method.as_str(), segments.as_slice()) {
        ("GET", ["tickets"]) => list_tickets(data, query),
        ("GET", ["ticket", id]) => read_ticket(data, id),
        ("POST", ["ticket", id, action]) => ticket_id(data, id).and_then(|id| match *action {
            "staff_pvtnote" => staff_write(data, id, body, false),
            "staff_update" => staff_write(data, id, body, true),
            "user_reply" => user_reply(data, id, body),
            "move" => move_ticket(data, id, body),
            "update_custom_fields" => update_custom_fields(data, id, body),
            _ => Err(missing()),
        }),
        ("GET", ["users"]) => Ok(list_users(data, query)),
        ("GET", ["user", key]) => data
            .users
            .iter()
            .find(|u| u["id"].as_u64() == key.parse().ok() || u["email"] == *key)
            .map(|u| ok(u.clone()))
            .ok_or_else(missing),
        ("GET", [list]) if data.lists.contains_key(*list) => Ok(ok(data.lists[*list].clone())),
        _ => Err(missing()),
    };
    answer.unwrap_or_else(|refusal| *refusal)
}

fn ticket_id(data: &Data, id: &str) -> Result<u64, Refusal> {
    id.parse()
        .ok()
        .filter(|id| data.tickets.contains_key(id))
        .ok_or_else(missing)
}

fn read_ticket(data: &Data, id: &str) -> Answer {
    match (ticket_id(data, id), data.stand_in, id.parse::<u64>()) {
        (Ok(id), _, _) => Ok(ok(data.tickets[&id].clone())),
        (Err(_), Some(like), Ok(id)) => {
            let mut ticket = data.tickets[&like].clone();
            ticket["id"] = json!(id);
            Ok(ok(ticket))
        }
        (Err(missing), _, _) => Err(missing),
    }
}

fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Search terms: `key:"value"` or bare words, split on spaces outside quotes.
fn terms(q: &str) -> Vec<(Option<String>, String)> {
    let mut tokens = Vec::new();
    let (mut current, mut quoted) = (String::new(), false);
    for c in q.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' | '+' if !quoted => tokens.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    tokens.push(current);
    tokens
        .into_iter()
        .filter(|t| !t.is_empty())
        .map(|t| match t.split_once(':') {
            Some((k, v)) => (Some(k.to_lowercase()), v.to_lowercase()),
            None => (None, t.to_lowercase()),
        })
        .collect()
}

/// `page_info` and the page's rows, as `/tickets/` and `/users/` answer.
fn page(rows: Vec<Value>, query: &[(String, String)]) -> Answer {
    let size: usize = param(query, "size")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    if !(1..=50).contains(&size) {
        return Err(invalid(
            "size",
            "Ensure this value is less than or equal to 50.",
        ));
    }
    let page: usize = param(query, "page")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    let total = rows.len();
    let data: Vec<Value> = rows
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .collect();
    Ok(ok(json!({
        "page_info": {
            "count": data.len(), "start_index": (page - 1) * size + 1,
            "end_index": (page - 1) * size + data.len(), "last_index": total,
            "page_count": total.div_ceil(size),
        },
        "data": data,
    })))
}

fn list_tickets(data: &Data, query: &[(String, String)]) -> Answer {
    let categories: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "category")
        .map(|(_, v)| v.as_str())
        .collect();
    let status = param(query, "status").unwrap_or("_all");
    let terms = param(query, "q").map(terms).unwrap_or_default();
    let rows: Vec<Value> = data
        .tickets
        .values()
        .rev()
        .filter(|t| match status {
            "_all" => true,
            "_pending" => t["status"]["behavior"] == "pending",
            id => t["status"]["id"].as_u64() == id.parse().ok(),
        })
        .filter(|t| {
            categories.is_empty() || categories.contains(&t["category"]["id"].to_string().as_str())
        })
        .filter(|t| {
            terms.iter().all(|(key, value)| match key.as_deref() {
                Some("contact") => {
                    t["user"]["email"].as_str().unwrap_or("").to_lowercase() == *value
                }
                None => [&t["subject"], &t["first_message"]].iter().any(|f| {
                    f.as_str()
                        .unwrap_or("")
                        .to_lowercase()
                        .contains(value.as_str())
                }),
                Some(_) => true, // other filters are not modelled: they match everything
            })
        })
        .cloned()
        .collect();
    page(rows, query)
}

fn list_users(data: &Data, query: &[(String, String)]) -> Response {
    let terms = param(query, "q").map(terms).unwrap_or_default();
    let rows: Vec<Value> = data
        .users
        .iter()
        .filter(|u| {
            terms.iter().all(|(key, value)| match key.as_deref() {
                Some("email") => u["email"]
                    .as_str()
                    .unwrap_or("")
                    .to_lowercase()
                    .contains(value.as_str()),
                Some("name") => u["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_lowercase()
                    .contains(value.as_str()),
                _ => true,
            })
        })
        .cloned()
        .collect();
    page(rows, query).unwrap_or_else(|e| *e)
}

/// The acting agent named by `key` (`staff` or `staff_id`): present and an active staff member.
fn agent(data: &Data, body: &Value, key: &str) -> Result<Value, Refusal> {
    let Some(id) = body.get(key).filter(|v| !v.is_null()) else {
        return Err(invalid(key, "This field is required."));
    };
    id.as_u64()
        .and_then(|id| data.find("staff", id))
        .filter(|s| s["active"] == true)
        .ok_or_else(|| {
            invalid(
                key,
                "Select a valid choice. That choice is not one of the available choices.",
            )
        })
}

fn push_update(data: &mut Data, id: u64, by: Value, message: Value, changes: Map<String, Value>) {
    data.next_update_id += 1;
    let mut update = json!({
        "update_id": data.next_update_id, "timestamp": "2026-03-02 17:00:00", "by": by,
        "message": message, "status_change": null, "priority_change": null,
        "assignee_change": null, "category_change": null, "due_date_change": null,
        "custom_field_change": null, "time_spent": null, "satisfaction_survey": null,
    });
    for (k, v) in changes {
        update[k] = v;
    }
    let ticket = data.tickets.get_mut(&id).unwrap();
    ticket["updates"].as_array_mut().unwrap().push(update);
    ticket["last_modified"] = json!("2026-03-02 17:00:00");
}

fn message(text: &str, html: &str, notified: bool) -> Value {
    json!({"subject": "", "text": text, "html": html, "cc_list": "", "bcc_list": "",
           "forward_list": null, "message_type": null, "customer_updated": notified, "attachments": []})
}

/// `staff_pvtnote` (private, a message is required) and `staff_update` (public reply and/or
/// property changes).
fn staff_write(data: &mut Data, id: u64, body: &Value, public: bool) -> Answer {
    let staff = agent(data, body, "staff")?;
    let html = body
        .get("html")
        .or_else(|| body.get("plaintext"))
        .and_then(Value::as_str);
    if !public && html.is_none_or(str::is_empty) {
        return Err(invalid("html", "This field is required."));
    }
    let ticket = data.tickets[&id].clone();
    if ticket["category"]["time_spent_mandatory"] == true && body.get("time_spent").is_none() {
        return Err(invalid("time_spent", "This field is required."));
    }
    let mut changes = Map::new();
    let mut new = ticket.clone();
    for (key, list, change) in [
        ("status", "statuses", "status_change"),
        ("priority", "priorities", "priority_change"),
    ] {
        let Some(value) = body.get(key) else { continue };
        let Some(item) = value.as_u64().and_then(|v| data.find(list, v)) else {
            return Err(invalid(key, "Select a valid choice."));
        };
        changes.insert(change.into(), json!({"old": ticket[key]["id"], "new": item["id"], "old_name": ticket[key]["name"], "new_name": item["name"]}));
        new[key] = item;
    }
    if new["status"]["behavior"] == "completed" {
        let missing: Map<String, Value> = new["custom_fields"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["compulsory_on_complete"] == true && f["value"].is_null())
            .map(|f| {
                (
                    format!("t-cf-{}", f["id"]),
                    json!("This field should be filled before marking this ticket as completed"),
                )
            })
            .collect();
        if !missing.is_empty() {
            // Documented without a status code; a 200 is what a tolerant client must catch.
            return Ok(ok(json!({"error": missing})));
        }
    }
    if let Some(assignee) = body.get("assignee") {
        let staff_member = match assignee.as_u64() {
            None if assignee.is_null() => Value::Null,
            Some(a) => data
                .find("staff", a)
                .ok_or_else(|| invalid("assignee", "Select a valid choice."))?,
            None => return Err(invalid("assignee", "Select a valid choice.")),
        };
        changes.insert("assignee_change".into(), json!({"old": ticket["assigned_to"]["id"], "new": staff_member["id"], "old_name": ticket["assigned_to"]["name"], "new_name": staff_member["name"]}));
        new["assigned_to"] = staff_member;
    }
    let notified = public && body["update_customer"] == true;
    let text = html.map(|h| message(h, h, notified)).unwrap_or(Value::Null);
    let by =
        json!({"id": staff["id"], "type": "staff", "name": staff["name"], "email": staff["email"]});
    data.tickets.insert(id, new);
    push_update(data, id, by, text, changes);
    Ok(ok(data.tickets[&id].clone()))
}

fn user_reply(data: &mut Data, id: u64, body: &Value) -> Answer {
    let Some(user) = body.get("user").and_then(Value::as_u64) else {
        return Err(invalid("user", "This field is required."));
    };
    let Some(text) = body
        .get("text")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    else {
        return Err(invalid("text", "This field is required."));
    };
    let by = json!({"id": user, "type": "user"});
    push_update(data, id, by, message(text, text, true), Map::new());
    Ok(ok(data.tickets[&id].clone()))
}

fn move_ticket(data: &mut Data, id: u64, body: &Value) -> Answer {
    agent(data, body, "staff_id")?;
    let Some(category) = body
        .get("target_category_id")
        .and_then(Value::as_u64)
        .and_then(|c| data.find("categories", c))
    else {
        return Err(invalid("target_category_id", "Select a valid choice."));
    };
    let category_id = category["id"].as_u64().unwrap();
    let fields = data.fields_for(category_id, &data.tickets[&id]["custom_fields"]);
    let ticket = data.tickets.get_mut(&id).unwrap();
    ticket["category"] = category.clone();
    ticket["custom_fields"] = json!(fields);
    Ok(ok(
        json!({"status_code": 200, "message": format!("moved ticket to {}", category["name"].as_str().unwrap())}),
    ))
}

fn update_custom_fields(data: &mut Data, id: u64, body: &Value) -> Answer {
    agent(data, body, "staff")?;
    let mut errors = Map::new();
    let mut fields = data.tickets[&id]["custom_fields"].clone();
    for (key, value) in body.as_object().into_iter().flatten() {
        let Some(field_id) = key.strip_prefix("t-cf-") else {
            continue;
        };
        let Some(field) = fields
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|f| f["id"].as_u64() == field_id.parse().ok())
        else {
            errors.insert(
                key.clone(),
                json!("This field does not belong to the ticket's category"),
            );
            continue;
        };
        if field["type"] == "choice" {
            let def = data.lists["ticket_custom_fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["id"] == field["id"])
                .unwrap();
            match def["choices"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"] == *value)
            {
                Some(choice) => {
                    field["value"] = choice["text"].clone();
                    field["value_id"] = choice["id"].clone();
                }
                None => {
                    errors.insert(key.clone(), json!("Select a valid choice."));
                }
            }
        } else {
            field["value"] = value.clone();
        }
    }
    if !errors.is_empty() {
        let keyed = (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": errors})),
        );
        return Err(Box::new(keyed.into_response()));
    }
    data.tickets.get_mut(&id).unwrap()["custom_fields"] = fields;
    Ok(ok(json!({})))
}
