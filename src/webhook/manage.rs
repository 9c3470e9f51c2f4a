//! `follow`'s webhook in Gladly (DESIGN §12, spec §6): exactly one per pipeline, found by its
//! URL (Gladly never shows credentials, so they are set again on every start), created
//! disabled and then enabled (Gladly's PING reaches the receiver during that call), switched
//! back on when Gladly switched it off, created again when someone deleted it.

use serde_json::json;

use crate::config::{Pipeline, WebhookConfig};
use crate::gladly::{GladlyClient, GladlyError, Webhook};
use crate::log;
use crate::model::{AgentEventKind, ConversationEventKind};

/// The event types the pipeline reads: the webhook's subscription.
pub fn event_types() -> Vec<&'static str> {
    AgentEventKind::ALL
        .iter()
        .map(|k| k.as_str())
        .chain(ConversationEventKind::ALL.iter().map(|k| k.as_str()))
        .collect()
}

/// The webhook's name in Gladly.
pub fn name(p: &Pipeline) -> String {
    format!("gladly-wfm {}", p.name)
}

/// What a look at the webhook found and did.
#[derive(Clone, Debug, PartialEq)]
pub enum Looked {
    /// On, nothing to do.
    On,
    /// Created (none had this URL or name), and enabled.
    Created,
    /// Gone (deleted by someone): created again, and enabled.
    Recreated,
    /// Gladly had switched it off after failed deliveries (when, RFC 3339): switched on again.
    SwitchedOnAgain(Option<String>),
    /// Off for another reason (someone disabled it): switched on again.
    Enabled,
}

/// The webhook for `public_url`, if the organisation has one.
pub async fn find(
    gladly: &GladlyClient,
    w: &WebhookConfig,
) -> Result<Option<Webhook>, GladlyError> {
    Ok(gladly
        .webhooks()
        .await?
        .into_iter()
        .find(|h| same_url(&h.url, &w.public_url)))
}

/// The pipeline's webhook: the one at `public_url`, else the one with its name (`public_url`
/// changed since it was made: it is moved rather than left failing beside a new one).
async fn find_own(
    p: &Pipeline,
    gladly: &GladlyClient,
    w: &WebhookConfig,
) -> Result<Option<Webhook>, GladlyError> {
    let all = gladly.webhooks().await?;
    let by_url = all.iter().find(|h| same_url(&h.url, &w.public_url));
    let own = name(p);
    let by_name = || all.iter().find(|h| h.name.as_deref() == Some(own.as_str()));
    Ok(by_url.or_else(by_name).cloned())
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// At start: the pipeline's webhook found (its name, events and credentials set again) or
/// created, then enabled. The receiver must already be listening: enabling it makes Gladly
/// PING it during the call.
pub async fn ensure(
    p: &Pipeline,
    gladly: &GladlyClient,
    w: &WebhookConfig,
) -> Result<(Webhook, Looked), GladlyError> {
    let settings = json!({
        "name": name(p),
        "events": event_types(),
        "credentials": {"username": w.user, "password": w.password.expose()},
    });
    let (hook, created) = match find_own(p, gladly, w).await? {
        Some(h) => {
            let mut settings = settings;
            if !same_url(&h.url, &w.public_url) {
                log::warn(format!(
                    "webhook: `{}` posted to {}; moving it to {}",
                    name(p),
                    h.url,
                    w.public_url
                ));
                // A new URL makes Gladly PING it: the receiver is already listening.
                settings["url"] = json!(w.public_url);
            }
            gladly.patch_webhook(&h.id, &settings).await?;
            let url = w.public_url.clone();
            (Webhook { url, ..h }, false)
        }
        None => {
            let mut body = settings.clone();
            body["url"] = json!(w.public_url);
            body["enabled"] = json!(false);
            let id = match gladly.create_webhook(&body).await {
                Ok(id) => id,
                // A create whose answer was lost and was retried finds its URL taken.
                Err(e @ GladlyError::Api { status: 400, .. }) => match find(gladly, w).await? {
                    Some(h) => h.id,
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            };
            let h = Webhook {
                id,
                name: Some(name(p)),
                url: w.public_url.clone(),
                events: event_types().iter().map(|s| s.to_string()).collect(),
                enabled: false,
                disabled_at_due_to_retry_limit: None,
            };
            (h, true)
        }
    };
    let looked = switch_on(gladly, &hook, created).await?;
    Ok((
        Webhook {
            enabled: true,
            ..hook
        },
        looked,
    ))
}

/// Turns `hook` on unless it is; says what it found.
async fn switch_on(
    gladly: &GladlyClient,
    hook: &Webhook,
    created: bool,
) -> Result<Looked, GladlyError> {
    if hook.enabled {
        return Ok(Looked::On);
    }
    gladly
        .patch_webhook(&hook.id, &json!({"enabled": true}))
        .await?;
    Ok(if created {
        Looked::Created
    } else if hook.disabled_at_due_to_retry_limit.is_some() {
        Looked::SwitchedOnAgain(hook.disabled_at_due_to_retry_limit.clone())
    } else {
        Looked::Enabled
    })
}

/// Every `dimensions_minutes`: the webhook switched on again when it is off, created again
/// when it is gone. The caller says what was found (a webhook Gladly switched off is a warning
/// and a counter).
pub async fn look_after(
    p: &Pipeline,
    gladly: &GladlyClient,
    w: &WebhookConfig,
) -> Result<(Webhook, Looked), GladlyError> {
    let Some(hook) = find(gladly, w).await? else {
        let (h, _) = ensure(p, gladly, w).await?;
        return Ok((h, Looked::Recreated));
    };
    let looked = switch_on(gladly, &hook, false).await?;
    Ok((
        Webhook {
            enabled: true,
            ..hook
        },
        looked,
    ))
}

/// `check --remove-webhook`: disables the pipeline's webhook and deletes it; `None` when
/// there was none.
pub async fn remove(
    gladly: &GladlyClient,
    w: &WebhookConfig,
) -> Result<Option<Webhook>, GladlyError> {
    let Some(hook) = find(gladly, w).await? else {
        return Ok(None);
    };
    if hook.enabled {
        gladly
            .patch_webhook(&hook.id, &json!({"enabled": false}))
            .await?;
    }
    gladly.delete_webhook(&hook.id).await?;
    Ok(Some(hook))
}

/// One line for `check` and `status`.
pub fn describe(hook: Option<&Webhook>, w: &WebhookConfig) -> String {
    match hook {
        None => format!("webhook: none in Gladly for {}", w.public_url),
        Some(h) => format!(
            "webhook: {} `{}` ({}){}",
            h.url,
            h.name.as_deref().unwrap_or(""),
            if h.enabled { "enabled" } else { "DISABLED" },
            h.disabled_at_due_to_retry_limit
                .as_deref()
                .map(|t| format!("; Gladly last switched it off after failed deliveries at {t}"))
                .unwrap_or_default()
        ),
    }
}
