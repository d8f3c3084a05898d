//! An application's load balancers: each listener, the server groups behind it with
//! their weight (the traffic share as routed now), and their recent traffic and error
//! ratio, from the samples the built-in load balancer stores for canary analysis (the
//! same numbers as the `builtin` metric source's `request_rate` and `error_ratio`).
//! Also the traffic shares shown on the clusters view's server group cards.

use std::collections::{BTreeMap, BTreeSet};

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use gennaker_deploy::{LoadBalancer, ServerGroup};
use gennaker_store::{MetricSample, RequestCounts, now_millis};

use super::pages::Layout;
use super::{UiState, Viewer, error_page, render};
use crate::auth::Access;
use crate::error::ApiResult;
use crate::routes::applications::authorize;

/// How far back "recent" traffic goes.
pub(crate) const RECENT_MS: i64 = 5 * 60 * 1000;
/// Samples read per server group at most (5 minutes of 1 s samples behind a dozen
/// load balancers); beyond, the oldest are counted and the rest left out.
const MAX_SAMPLES: usize = 5_000;

/// A server group behind a load balancer.
#[derive(Debug)]
pub(crate) struct BackendRow {
    name: String,
    /// Its traffic share now, 0 to 100.
    weight: u32,
    disabled: bool,
    up: usize,
    instances: usize,
    /// Requests completed in the recent window.
    requests: u64,
    /// Per second over the window.
    rate: String,
    /// (5xx + requests without a response) / all, as `12.5%`; `–` without requests.
    error_ratio: String,
    /// Whether any request failed (the ratio is shown as a warning).
    errors: bool,
}

/// A load balancer's card.
#[derive(Debug)]
pub(crate) struct BalancerView {
    name: String,
    account: String,
    provider: String,
    listen: String,
    address: String,
    allowed: String,
    ejection_failures: u32,
    backends: Vec<BackendRow>,
}

#[derive(Template)]
#[template(path = "ui/balancers.html")]
struct BalancersPage {
    layout: Layout,
    balancers: Vec<BalancerView>,
    window_minutes: i64,
}

/// What a server group's samples behind one load balancer add up to.
fn add_up<'a>(samples: impl Iterator<Item = &'a MetricSample>) -> (RequestCounts, i64) {
    let mut total = RequestCounts::default();
    let mut window = 0i64;
    for s in samples {
        let r = &s.requests;
        total.ok = total.ok.saturating_add(r.ok);
        total.redirect = total.redirect.saturating_add(r.redirect);
        total.client_error = total.client_error.saturating_add(r.client_error);
        total.server_error = total.server_error.saturating_add(r.server_error);
        total.error = total.error.saturating_add(r.error);
        window = window.saturating_add(s.window_ms.max(0));
    }
    (total, window)
}

/// The error ratio as the `builtin` metric `error_ratio` defines it, as a percentage
/// with one decimal; `None` without requests.
pub(crate) fn error_ratio(requests: &RequestCounts) -> Option<String> {
    let total = requests.total();
    (total > 0).then(|| {
        let failed = requests.server_error.saturating_add(requests.error);
        format!("{:.1}%", failed as f64 * 100.0 / total as f64)
    })
}

/// The groups behind `balancer`: those it routes to and those that name it.
fn backend_names(balancer: &LoadBalancer, groups: &[ServerGroup]) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = balancer.weights.keys().cloned().collect();
    names.extend(
        groups
            .iter()
            .filter(|g| {
                g.account == balancer.spec.account && g.load_balancers.contains(&balancer.spec.name)
            })
            .map(|g| g.name.clone()),
    );
    names
}

/// Every load balancer of `app` on every provider that has them, with the provider's
/// name and its server groups of the application.
async fn balancers_of(
    state: &UiState,
    app: &str,
) -> ApiResult<Vec<(String, Vec<LoadBalancer>, Vec<ServerGroup>)>> {
    let mut found = Vec::new();
    for provider_name in state.app.providers.names() {
        // A provider without load balancers (no traffic router) has nothing to show.
        let Ok(router) = state.app.providers.router(Some(&provider_name)) else {
            continue;
        };
        let balancers = router.load_balancers(app).await?;
        if balancers.is_empty() {
            continue;
        }
        let provider = state.app.providers.provider(Some(&provider_name))?;
        let groups = provider.server_groups(app).await?;
        found.push((provider_name, balancers, groups));
    }
    Ok(found)
}

/// Each server group's traffic share per load balancer, by (account, server group):
/// `[(load balancer, share)]`, for the clusters view.
pub(crate) async fn traffic_shares(
    state: &UiState,
    app: &str,
) -> ApiResult<BTreeMap<(String, String), Vec<(String, u32)>>> {
    let mut shares: BTreeMap<(String, String), Vec<(String, u32)>> = BTreeMap::new();
    for (_, balancers, groups) in balancers_of(state, app).await? {
        for balancer in &balancers {
            for name in backend_names(balancer, &groups) {
                let weight = balancer.weights.get(&name).copied().unwrap_or(0);
                shares
                    .entry((balancer.spec.account.clone(), name))
                    .or_default()
                    .push((balancer.spec.name.clone(), weight));
            }
        }
    }
    Ok(shares)
}

/// `/applications/{app}/loadBalancers`: the load balancers, with what each routes
/// where and how that traffic fares.
pub(crate) async fn load_balancers(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(app): Path<String>,
) -> Response {
    match balancers_page(&state, &viewer, &app).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(err) => error_page(Some(&viewer), &err),
    }
}

async fn balancers_page(state: &UiState, viewer: &Viewer, app: &str) -> ApiResult<BalancersPage> {
    let application = authorize(&state.app, &viewer.caller, app, Access::Read).await?;
    let now = now_millis();
    let mut views = Vec::new();
    // Samples are per server group (over every load balancer): read each group once.
    let mut samples: BTreeMap<String, Vec<MetricSample>> = BTreeMap::new();
    for (provider, balancers, groups) in balancers_of(state, &application.name).await? {
        for balancer in balancers {
            let mut backends = Vec::new();
            for name in backend_names(&balancer, &groups) {
                if !samples.contains_key(&name) {
                    let read = state
                        .app
                        .metric_samples
                        .metric_samples(&name, now - RECENT_MS, now, MAX_SAMPLES)
                        .await?;
                    samples.insert(name.clone(), read);
                }
                let (requests, window_ms) = add_up(
                    samples
                        .get(&name)
                        .into_iter()
                        .flatten()
                        .filter(|s| s.load_balancer == balancer.spec.name),
                );
                let group = groups
                    .iter()
                    .find(|g| g.name == name && g.account == balancer.spec.account);
                let total = requests.total();
                backends.push(BackendRow {
                    weight: balancer.weights.get(&name).copied().unwrap_or(0),
                    disabled: group.is_none_or(|g| g.disabled),
                    up: group.map_or(0, ServerGroup::up_instances),
                    instances: group.map_or(0, |g| g.instances.len()),
                    requests: total,
                    rate: if window_ms > 0 {
                        format!("{:.1}/s", total as f64 * 1000.0 / window_ms as f64)
                    } else {
                        "–".to_owned()
                    },
                    error_ratio: error_ratio(&requests).unwrap_or_else(|| "–".to_owned()),
                    errors: requests.server_error.saturating_add(requests.error) > 0,
                    name,
                });
            }
            // The groups taking traffic first, then the newest.
            backends.sort_by(|a, b| b.weight.cmp(&a.weight).then(b.name.cmp(&a.name)));
            views.push(BalancerView {
                name: balancer.spec.name,
                account: balancer.spec.account,
                provider: provider.clone(),
                listen: balancer.spec.listen,
                address: balancer.address,
                allowed: if balancer.spec.allowed_cidrs.is_empty() {
                    "everyone".to_owned()
                } else {
                    balancer.spec.allowed_cidrs.join(", ")
                },
                ejection_failures: balancer.spec.ejection_failures,
                backends,
            });
        }
    }
    Ok(BalancersPage {
        layout: Layout::new(
            viewer,
            format!("Load balancers · {}", application.name),
            Some(&application.name),
            "loadBalancers",
        )
        .with_flash(state, viewer),
        balancers: views,
        window_minutes: RECENT_MS / 60_000,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_ratio_counts_5xx_and_requests_without_an_answer() {
        let requests = RequestCounts {
            ok: 5,
            redirect: 1,
            client_error: 1,
            server_error: 2,
            error: 1,
        };
        assert_eq!(error_ratio(&requests).as_deref(), Some("30.0%"));
        assert_eq!(error_ratio(&RequestCounts::default()), None);
    }
}
