//! Expected artifacts bound when an execution starts, on SQLite and PostgreSQL: a match
//! from the trigger, the prior successful execution's, the default, and the executions
//! that cannot start (required and missing, ambiguous) failing before any stage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_engine::ExecutionStatus::*;
use gennaker_engine::testing::{Fault, FaultRun, stage, summary};
use gennaker_engine::{RunRequest, engine_test, fault_test};
use serde_json::{Value, json};

fn git(version: &str) -> Value {
    json!({"type": "git/repo", "name": "acme/web", "version": version,
        "reference": "https://git.example/acme/web.git", "metadata": {"branch": "main"}})
}

/// A pipeline expecting a `git/repo` artifact named `repo`, whose one stage reads it.
fn pipeline(extra: Value) -> Value {
    let mut expected = json!({"id": "repo-id", "displayName": "repo",
        "matchArtifact": {"type": "git/repo", "name": "acme/.*"}});
    for (k, v) in extra.as_object().unwrap() {
        expected[k] = v.clone();
    }
    json!({
        "expectedArtifacts": [expected],
        "triggers": [{"type": "git", "source": "github", "project": "acme", "slug": "web",
                      "expectedArtifactIds": ["repo-id"]}],
        "stages": [{"refId": "1", "name": "read", "type": "evaluateVariables", "variables": [
            {"key": "commit", "value": "${#triggerResolvedArtifact('repo').version}"},
            {"key": "byName", "value": "${#triggerResolvedArtifact('acme/web').reference}"},
            {"key": "byType", "value": "${#triggerResolvedArtifactByType('git/repo').metadata.branch}"}
        ]}]
    })
}

/// A git trigger's run request carrying `artifacts`.
fn pushed(artifacts: Vec<Value>) -> RunRequest {
    RunRequest {
        artifacts,
        trigger: json!({"type": "git", "expectedArtifactIds": ["repo-id"]})
            .as_object()
            .cloned()
            .unwrap(),
        ..RunRequest::default()
    }
}

engine_test!(
    trigger_artifacts_bind_and_later_runs_use_the_prior_one,
    |h| {
        let config = pipeline(json!({"usePriorArtifact": true}));
        let first = h
            .run_with("build", config.clone(), pushed(vec![git("abc123")]))
            .await;
        let done = h.finished(&first.id).await;
        assert_eq!(done.status, Succeeded, "{}", summary(&done));
        let read = stage(&done, "read");
        assert_eq!(read.outputs["commit"], "abc123");
        assert_eq!(read.outputs["byName"], "https://git.example/acme/web.git");
        assert_eq!(read.outputs["byType"], "main");
        let resolved = done.trigger["resolvedExpectedArtifacts"]
            .as_array()
            .unwrap();
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0]["id"], "repo-id");
        assert_eq!(resolved[0]["boundArtifact"], git("abc123"));
        assert_eq!(done.trigger["artifacts"], json!([git("abc123")]));
        assert_eq!(done.trigger["expectedArtifacts"][0]["id"], "repo-id");

        // Nothing sent this time: the last successful execution's artifact is used.
        let second = h.run_with("build", config, pushed(vec![])).await;
        let done = h.finished(&second.id).await;
        assert_eq!(done.status, Succeeded, "{}", summary(&done));
        assert_eq!(stage(&done, "read").outputs["commit"], "abc123");
        assert_eq!(done.trigger["artifacts"], json!([git("abc123")]));
    }
);

engine_test!(a_required_artifact_missing_fails_before_any_stage, |h| {
    let offered = json!({"type": "docker/image", "name": "gcr.io/acme/web", "version": "1.2"});
    let execution = h
        .run_with("build", pipeline(json!({})), pushed(vec![offered]))
        .await;
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Terminal, "{}", summary(&done));
    assert!(done.stages.iter().all(|s| s.status == NotStarted));
    let reason = done.cancellation_reason.clone().unwrap();
    assert!(reason.starts_with("Failed on startup: "), "{reason}");
    assert!(reason.contains("'repo' (id repo-id)"), "{reason}");
    assert!(
        reason.contains("docker/image gcr.io/acme/web@1.2"),
        "{reason}"
    );
    assert!(h.queue_is_empty().await);
});

engine_test!(an_ambiguous_artifact_fails_before_any_stage, |h| {
    let execution = h
        .run_with(
            "build",
            pipeline(json!({})),
            pushed(vec![git("one"), git("two")]),
        )
        .await;
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Terminal, "{}", summary(&done));
    assert!(done.stages.iter().all(|s| s.status == NotStarted));
    let reason = done.cancellation_reason.unwrap();
    assert!(reason.contains("ambiguous"), "{reason}");
    assert!(
        reason.contains("acme/web@one") && reason.contains("acme/web@two"),
        "{reason}"
    );
});

fault_test!(
    /// Binding the default artifact is part of the start step: repeated or crashed,
    /// the execution reads it once and ends as undisturbed.
    default_artifacts_bind_under_faults,
    |backend, fault| {
        let mut config =
            pipeline(json!({"useDefaultArtifact": true, "defaultArtifact": git("stable")}));
        // A polling stage after it, so the run has enough steps for the faults to strike.
        config["stages"].as_array_mut().unwrap().push(json!({"refId": "2", "name": "work",
            "type": "test", "outcome": "poll:6", "requisiteStageRefIds": ["1"]}));
        let run = |fault| FaultRun::new(backend, fault, config.clone()).run();
        let reference = run(Fault::None).await;
        reference.assert_succeeded();
        let disturbed = run(fault).await;
        disturbed.assert_same_as(&reference);
        disturbed.assert_clean();
        assert_eq!(stage(&disturbed.execution, "read").outputs["commit"], "stable");
        assert_eq!(
            disturbed.execution.trigger["resolvedExpectedArtifacts"][0]["boundArtifact"],
            git("stable")
        );
    }
);
