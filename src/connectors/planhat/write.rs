//! The write tools: create a task, create a churn record, update an opportunity. Each checks
//! before sending that every id it references exists at its own model's endpoint and that every
//! custom field key is defined for the model written; the body sent is the typed arguments, so
//! nothing the schema does not name reaches Planhat.

use super::custom_fields::Model;
use super::refs::{Kind, ObjectId, object_id_schema};
use super::{Op, Planhat, segment, shape, written};
use crate::tools::{ToolContext, ToolError};
use crate::upstream::Request;
use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

const DATE_PATTERN: &str = r"^\d{4}-\d{2}-\d{2}(T.+)?$";

fn date_schema(description: &str) -> Value {
    json!({"type": "string", "pattern": DATE_PATTERN, "description": description})
}

fn custom_schema(model: &str) -> Value {
    json!({"type": "object", "minProperties": 1,
           "description": format!("Custom fields by their exact name (see planhat.list_custom_fields with model \"{model}\"); unknown names are refused.")})
}

fn body<T: Serialize>(args: &T) -> Result<Value, ToolError> {
    serde_json::to_value(args).map_err(|e| ToolError::Permanent(format!("encoding the body: {e}")))
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MainType {
    Task,
    Event,
}

pub struct CreateTask;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateTaskArgs {
    main_type: MainType,
    company_id: ObjectId,
    action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_id: Option<ObjectId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    no_specific_time: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    endusers: Vec<ObjectId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    users: Vec<ObjectId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom: Option<Map<String, Value>>,
}

#[async_trait]
impl Op for CreateTask {
    type Args = CreateTaskArgs;
    const NAME: &'static str = "planhat.create_task";
    const DESCRIPTION: &'static str = "Create a Planhat task on a company. `mainType` \"task\" and `companyId` are required; `action` is the title; `description` may be HTML; `ownerId` must be an active team member (planhat.list_users); `endusers` must be contacts of that company. Every id is verified before the task is sent, and custom field keys must exist for tasks. Status and type are tenant-specific and cannot be set here.";
    const WRITES: bool = true;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "mainType": {"type": "string", "enum": ["task", "event"], "description": "\"task\" for a to-do, \"event\" for a calendar item."},
                "companyId": object_id_schema("The company's `_id` (an NPS record's `cId`)."),
                "action": {"type": "string", "minLength": 1, "maxLength": 200, "description": "The task title."},
                "description": {"type": "string", "maxLength": 20000, "description": "Details; HTML such as <p>, <ul>, <li>, <b> is allowed."},
                "ownerId": object_id_schema("The team member (user `_id`) who owns the task."),
                "startTime": date_schema("ISO date-time, e.g. 2024-11-06T09:00:00.000Z."),
                "endTime": date_schema("ISO date-time."),
                "noSpecificTime": {"type": "boolean"},
                "endusers": {"type": "array", "maxItems": 10, "uniqueItems": true,
                             "items": object_id_schema("An enduser `_id` of this company (e.g. an NPS record's `euId`).")},
                "users": {"type": "array", "maxItems": 10, "uniqueItems": true,
                          "items": object_id_schema("A team member's user `_id`.")},
                "externalId": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Your own id for the task, unique per company."},
                "custom": custom_schema("task")
            },
            "required": ["mainType", "companyId", "action"],
            "additionalProperties": false
        })
    }

    async fn check(ph: &Planhat, ctx: &ToolContext, a: &Self::Args) -> Result<(), ToolError> {
        ph.lookup(ctx, Kind::Company, "companyId", &a.company_id)
            .await?;
        if let Some(owner) = &a.owner_id {
            ph.active_user(ctx, "ownerId", owner).await?;
        }
        for (n, e) in a.endusers.iter().enumerate() {
            ph.enduser_of(ctx, &format!("endusers[{n}]"), e, &a.company_id)
                .await?;
        }
        for (n, u) in a.users.iter().enumerate() {
            ph.lookup(ctx, Kind::User, &format!("users[{n}]"), u)
                .await?;
        }
        ph.check_custom(ctx, Model::Task, a.custom.as_ref()).await
    }

    async fn run(ph: &Planhat, ctx: &ToolContext, a: Self::Args) -> Result<Value, ToolError> {
        let response = ph
            .send(ctx, Request::write(Method::POST, "/tasks", body(&a)?))
            .await?;
        let trimmed = shape::task(&response.body);
        Ok(written(response, trimmed))
    }
}

pub struct CreateChurn;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateChurnArgs {
    company_id: ObjectId,
    #[serde(skip_serializing_if = "Option::is_none")]
    churn_date: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    products: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arr: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    only_downgrade: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom: Option<Map<String, Value>>,
}

#[async_trait]
impl Op for CreateChurn {
    type Args = CreateChurnArgs;
    const NAME: &'static str = "planhat.create_churn";
    const DESCRIPTION: &'static str = "Record churn (or a downgrade, with onlyDowngrade) for a company in Planhat. This states that revenue was lost and feeds churn reporting: do not use it for a risk estimate. `companyId` is verified before sending; custom field keys must exist for churn.";
    const WRITES: bool = true;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "companyId": object_id_schema("The company that churned."),
                "churnDate": date_schema("ISO date of the churn."),
                "reasons": {"type": "array", "maxItems": 10, "items": {"type": "string", "minLength": 1}, "description": "Churn reasons as configured in the tenant."},
                "products": {"type": "array", "maxItems": 20, "items": {"type": "string", "minLength": 1}},
                "arr": {"type": "number", "minimum": 0, "description": "Annual recurring revenue lost."},
                "value": {"type": "number", "minimum": 0},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "onlyDowngrade": {"type": "boolean", "description": "A partial churn (downgrade), not a lost customer."},
                "comment": {"type": "string", "maxLength": 5000},
                "custom": custom_schema("churn")
            },
            "required": ["companyId"],
            "additionalProperties": false
        })
    }

    async fn check(ph: &Planhat, ctx: &ToolContext, a: &Self::Args) -> Result<(), ToolError> {
        ph.lookup(ctx, Kind::Company, "companyId", &a.company_id)
            .await?;
        ph.check_custom(ctx, Model::Churn, a.custom.as_ref()).await
    }

    async fn run(ph: &Planhat, ctx: &ToolContext, a: Self::Args) -> Result<Value, ToolError> {
        let response = ph
            .send(ctx, Request::write(Method::POST, "/churn", body(&a)?))
            .await?;
        let trimmed = shape::churn(&response.body);
        Ok(written(response, trimmed))
    }
}

pub struct UpdateOpportunity;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateOpportunityArgs {
    #[serde(skip_serializing)]
    opportunity_id: ObjectId,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sales_stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<OpportunityStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mrr: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arr: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nrr: Option<f64>,
    #[serde(rename = "_currency", skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contract_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    probability: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    close_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deal_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    landing_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_id: Option<ObjectId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpportunityStatus {
    Active,
    Won,
    Lost,
}

#[async_trait]
impl Op for UpdateOpportunity {
    type Args = UpdateOpportunityArgs;
    const NAME: &'static str = "planhat.update_opportunity";
    const DESCRIPTION: &'static str = "Change an existing Planhat opportunity: only the fields given are changed (sales stage, status active/won/lost, MRR/ARR/NRR, dates, title, owner, custom fields). The opportunity id and the owner are verified, and custom field keys must exist for opportunities, before anything is sent.";
    const WRITES: bool = true;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "opportunityId": object_id_schema("The opportunity's `_id`."),
                "title": {"type": "string", "minLength": 1, "maxLength": 200},
                "salesStage": {"type": "string", "minLength": 1, "description": "A stage name as configured in the tenant."},
                "status": {"type": "string", "enum": ["active", "won", "lost"]},
                "mrr": {"type": "number", "minimum": 0},
                "arr": {"type": "number", "minimum": 0},
                "nrr": {"type": "number", "minimum": 0, "description": "Non-recurring revenue."},
                "_currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "contractLength": {"type": "integer", "minimum": 1, "maximum": 120, "description": "Months."},
                "probability": {"type": "number", "minimum": 0, "maximum": 100},
                "closeDate": date_schema("ISO date."),
                "dealDate": date_schema("ISO date."),
                "landingDate": date_schema("ISO date."),
                "ownerId": object_id_schema("An active team member's user `_id`."),
                "custom": custom_schema("opportunity")
            },
            "required": ["opportunityId"],
            "minProperties": 2,
            "additionalProperties": false
        })
    }

    async fn check(ph: &Planhat, ctx: &ToolContext, a: &Self::Args) -> Result<(), ToolError> {
        ph.lookup(ctx, Kind::Opportunity, "opportunityId", &a.opportunity_id)
            .await?;
        if let Some(owner) = &a.owner_id {
            ph.active_user(ctx, "ownerId", owner).await?;
        }
        ph.check_custom(ctx, Model::Opportunity, a.custom.as_ref())
            .await
    }

    async fn run(ph: &Planhat, ctx: &ToolContext, a: Self::Args) -> Result<Value, ToolError> {
        let path = format!("/opportunities/{}", segment(a.opportunity_id.as_str()));
        let response = ph
            .send(ctx, Request::write(Method::PUT, path, body(&a)?))
            .await?;
        let trimmed = shape::opportunity(&response.body);
        Ok(written(response, trimmed))
    }
}
