//! Gennaker's Kubernetes provider, on kube-rs (no kubectl).
//!
//! - [`settings`]: `[[kubernetes.accounts]]` (a kubeconfig and context, or a URL,
//!   token and CA file; the namespaces stages may act in);
//! - [`cluster`]: a client per account, kinds resolved through discovery, and the
//!   calls stages make (server-side apply under the field manager `gennaker`, create,
//!   replace, patch, delete, list), with 403s turned into messages naming the verb,
//!   resource and namespace;
//! - [`manifest`], [`versioning`], [`status`]: Spinnaker's naming, moniker and artifact
//!   annotations, `-vNNN` versioning with its `strategy.spinnaker.io/*` annotations, and
//!   the "stable" rules per kind: pure logic;
//! - [`traffic`]: Spinnaker's traffic by pod labels (a Service's selector copied into
//!   a workload's pods; enable/disable add or remove it) and the
//!   `traffic.spinnaker.io/load-balancers` annotation;
//! - [`artifacts`]: artifact binding into manifests (`docker/image` by repository,
//!   `kubernetes/configMap` / `kubernetes/secret` by name) and the artifacts a live
//!   workload references: pure logic;
//! - [`fetch`]: reading an artifact's content (`embedded/base64`, `http/file` under
//!   the outbound policy, `github/file` through `[[artifacts.github.accounts]]`) for
//!   manifests and patch bodies from artifacts;
//! - [`register`]: the manifest stage types (`deployManifest` with
//!   `trafficManagement` red/black and highlander, `deleteManifest`,
//!   `scaleManifest`, `patchManifest`, `undoRolloutManifest`,
//!   `rollingRestartManifest`, `enableManifest`, `disableManifest`,
//!   `findArtifactsFromResource`; static and dynamic targets) acting through the
//!   accounts;
//! - [`KubernetesProvider`]: the accounts as a generic deployment provider and traffic
//!   router ([`provider`], [`router`]): the clusters view from a watch cache
//!   ([`watch`], [`view`]), the generic server-group stages, and canary traffic through
//!   ingress-nginx canary Ingresses.

pub mod artifacts;
pub mod cluster;
mod error;
pub mod fetch;
pub mod manifest;
pub mod provider;
pub mod router;
pub mod settings;
mod stages;
pub mod status;
pub mod traffic;
pub mod versioning;
pub mod view;
pub mod watch;

pub use cluster::{Account, KubernetesAccounts};
pub use error::{KubeError, SettingsError};
pub use fetch::ArtifactAccounts;
pub use provider::KubernetesProvider;
pub use settings::{AccountSettings, ArtifactSettings, KubernetesSettings};
pub use stages::{PROVIDER, register, register_with_artifacts};
