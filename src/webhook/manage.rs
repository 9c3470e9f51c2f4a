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
    /// Created (none had this URL), and enabled.
    Created,
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
    let (hook, created) = match find(gladly, w).await? {
        Some(h) => {
            gladly.patch_webhook(&h.id, &settings).await?;
            (h, false)
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
/// when it is gone. A webhook Gladly switched off is a warning and a counter.
pub async fn look_after(
    p: &Pipeline,
    gladly: &GladlyClient,
    w: &WebhookConfig,
) -> Result<Webhook, GladlyError> {
    let Some(hook) = find(gladly, w).await? else {
        log::warn(format!(
            "webhook: none in Gladly for {} any more (deleted?); creating it again",
            w.public_url
        ));
        let (h, _) = ensure(p, gladly, w).await?;
        crate::telemetry::webhook_enabled(true);
        return Ok(h);
    };
    let looked = switch_on(gladly, &hook, false).await?;
    match &looked {
        Looked::SwitchedOnAgain(at) => {
            log::warn(format!(
                "webhook: Gladly switched it off after failed deliveries (at {}); switched it on again — the poll covered what it missed",
                at.as_deref().unwrap_or("an unknown time")
            ));
            crate::telemetry::webhook_switched_on_again();
        }
        Looked::Enabled => log::warn("webhook: it was disabled in Gladly; switched it on again"),
        Looked::On | Looked::Created => {}
    }
    crate::telemetry::webhook_enabled(true);
    Ok(Webhook {
        enabled: true,
        ..hook
    })
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
