//! Every upstream vendor in one folder behind `Connector`: its account settings, what the rate
//! governor needs to know of its API, its tools, and its webhook adapter where it sends webhooks.
//! Adding a vendor is a folder and a line in `ALL`.

pub mod happyfox;
pub mod mcp;
pub mod planhat;
pub mod truto;

use crate::config::AccountConfig;
use crate::ingress::sources::{Adapter, Generic};
use crate::kernel::{ConnectorKind, Secret};
use crate::tools::ToolRegistry;
use crate::upstream::{self, Account, Auth, Profile, Upstream};
use async_trait::async_trait;

/// One upstream vendor.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// Its name, as `connector = "..."` spells it.
    fn kind(&self) -> ConnectorKind;
    /// Default base URL, budgets and 429 penalty.
    fn profile(&self) -> Profile;
    /// The optional `[accounts.NAME]` keys it reads besides `base_url`, `rate_limits`,
    /// `timeout` and `max_wait`: another connector's key set on its account is a mistake.
    fn keys(&self) -> &'static [&'static str];
    /// Problems with its own keys in an account table, as (key, message).
    fn check_account(&self, account: &AccountConfig) -> Vec<(String, String)>;
    /// How its requests authenticate; called once `check_account` found nothing.
    fn auth(&self, account: &AccountConfig) -> Auth;
    /// The adapter for `[sources.NAME]` with `kind` = its name, if the vendor sends webhooks.
    fn webhooks(&self) -> Option<&'static dyn Adapter> {
        None
    }
    /// The names of the tools `register_tools` adds, when they are known without asking the
    /// vendor; None when only its accounts know them at run time (Truto lists each account's).
    fn tool_names(&self) -> Option<Vec<&'static str>>;
    /// Each tool's static argument schema (what `Tool::parameters` answers), when known without
    /// I/O: `hookwise check` holds handlers' argument scopes against them. None for connectors
    /// whose tools only exist at run time; their scopes are checked when the tools are loaded.
    fn tool_schemas(&self) -> Option<Vec<(&'static str, serde_json::Value)>> {
        None
    }
    /// Adds its tools for the configured accounts.
    async fn register_tools(
        &self,
        registry: &mut ToolRegistry,
        upstream: &Upstream,
    ) -> Result<(), String>;
}

/// Every connector hookwise has.
pub static ALL: &[&dyn Connector] = &[
    &happyfox::HappyFoxConnector,
    &planhat::PlanhatConnector,
    &truto::TrutoConnector,
    &mcp::McpConnector,
];

/// The connector called `name`.
pub fn find(name: &str) -> Option<&'static dyn Connector> {
    ALL.iter().copied().find(|c| c.kind().as_str() == name)
}

fn names(list: impl Iterator<Item = &'static str>) -> String {
    list.map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The adapter a source of `kind` uses: `generic`, or a connector's webhooks.
pub fn adapter(kind: &str) -> Result<&'static dyn Adapter, String> {
    static GENERIC: Generic = Generic;
    let all = || {
        std::iter::once(&GENERIC as &'static dyn Adapter)
            .chain(ALL.iter().filter_map(|c| c.webhooks()))
    };
    all().find(|a| a.kind() == kind).ok_or_else(|| {
        let hint = crate::kernel::did_you_mean(kind, all().map(|a| a.kind()));
        if hint.is_empty() {
            format!(
                "unknown kind {kind:?}; expected one of {}",
                names(all().map(|a| a.kind()))
            )
        } else {
            format!("unknown kind {kind:?}{hint}")
        }
    })
}

/// The optional keys set in an account table.
fn set_keys(account: &AccountConfig) -> Vec<&'static str> {
    [
        ("api_key", account.api_key.is_some()),
        ("auth_code", account.auth_code.is_some()),
        ("token", account.token.is_some()),
        ("bot_staff_id", account.bot_staff_id.is_some()),
        (
            "integrated_account_id",
            account.integrated_account_id.is_some(),
        ),
        ("headers", !account.headers.is_empty()),
        ("serves", !account.serves.is_empty()),
        ("refresh", account.refresh.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect()
}

/// Checks one `[accounts.NAME]` table and resolves it for the upstream client. Problems are
/// (key relative to the table, message), all of them.
pub fn resolve_account(
    name: &str,
    account: &AccountConfig,
) -> Result<Account, Vec<(String, String)>> {
    let Some(connector) = find(&account.connector) else {
        let kinds = || ALL.iter().map(|c| c.kind().as_str());
        let hint = crate::kernel::did_you_mean(&account.connector, kinds());
        let message = if hint.is_empty() {
            format!(
                "unknown connector {:?}; expected one of {}",
                account.connector,
                names(kinds())
            )
        } else {
            format!("unknown connector {:?}{hint}", account.connector)
        };
        return Err(vec![("connector".into(), message)]);
    };
    let profile = connector.profile();
    let mut problems = connector.check_account(account);
    problems.extend(upstream::check_account(account, &profile));
    for key in set_keys(account) {
        if connector.keys().contains(&key) || problems.iter().any(|(k, _)| k == key) {
            continue;
        }
        let users = ALL
            .iter()
            .filter(|c| c.keys().contains(&key))
            .map(|c| format!("{:?}", c.kind().as_str()));
        problems.push((
            key.to_string(),
            format!(
                "only used with connector = {}",
                users.collect::<Vec<_>>().join(" or ")
            ),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let auth = connector.auth(account);
    Account::resolve(name, account, connector.kind(), &profile, auth)
        .map_err(|e| vec![(String::new(), e)])
}

/// Every tool of every connector, for the configured accounts.
pub async fn build_registry(upstream: &Upstream) -> Result<ToolRegistry, String> {
    let mut registry = ToolRegistry::new();
    for connector in ALL {
        connector.register_tools(&mut registry, upstream).await?;
    }
    Ok(registry)
}

/// The problem with a handler's tool name, if it cannot exist: its connector's tools are known
/// and it is not one of them, or it names no connector but nearly one ("hapyfox.get_ticket").
/// A name of no connector at all is left to the application's own registry (`Server::with_tools`).
pub fn unknown_tool(name: &str) -> Option<String> {
    let prefix = name.split_once('.').map_or(name, |(c, _)| c);
    let Some(connector) = find(prefix) else {
        let kinds = ALL.iter().map(|c| c.kind().as_str());
        return crate::kernel::closest(prefix, kinds)
            .map(|kind| format!("no connector {prefix:?}; did you mean `{kind}`?"));
    };
    let known = connector.tool_names()?;
    if known.contains(&name) {
        return None;
    }
    let all = ALL.iter().filter_map(|c| c.tool_names()).flatten();
    let hint = match crate::kernel::closest(name, all) {
        Some(tool) => format!("; did you mean `{tool}`?"),
        None => format!("; the {prefix} tools are {}", known.join(", ")),
    };
    Some(format!("unknown tool {name:?}{hint}"))
}

/// `<connector>.<name>` for a tool a vendor names at run time (Truto's, an MCP server's): the name
/// lower-cased, other characters as `_`, cut so that the wire name the model sees
/// (`<connector>__<name>`) fits providers' 64 characters. None when nothing usable is left.
pub fn runtime_tool_name(connector: ConnectorKind, raw: &str) -> Option<String> {
    let room = 64 - connector.as_str().len() - 2;
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(room);
    let s = s.trim_matches('_');
    (!s.is_empty()).then(|| format!("{connector}.{s}"))
}

/// Whether a secret is set and not empty (an unset `${VAR}` substitutes as "").
fn filled(secret: &Option<Secret>) -> bool {
    secret.as_ref().is_some_and(|s| !s.expose().is_empty())
}

/// `key` is required for `connector`'s accounts.
fn require(
    problems: &mut Vec<(String, String)>,
    connector: ConnectorKind,
    key: &str,
    present: bool,
) {
    if !present {
        problems.push((
            key.to_string(),
            format!("required for connector = \"{connector}\""),
        ));
    }
}

/// A secret `check_account` required.
fn secret(s: &Option<Secret>) -> Secret {
    s.clone().unwrap_or_else(|| Secret::new(""))
}

#[cfg(test)]
mod webhook_tests;
