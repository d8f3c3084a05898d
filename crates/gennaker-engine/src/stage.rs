//! Stage types: what a stage expands into (tasks, synthetic stages) and how it is
//! canceled. Each type is registered once, with its tasks, in a [`StageRegistry`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::message::Message;
use crate::task::{Services, Task, TaskError};
use gennaker_core::execution::{Execution, StageExecution};

/// A task in a stage's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    /// A readable name (`waitTask`, `monitorWebhook`).
    pub name: String,
    /// The registered [`Task::name`] that runs it.
    pub implementing_class: &'static str,
}

impl TaskSpec {
    /// A task whose readable name is its implementing class.
    pub fn new(task: &'static str) -> Self {
        Self {
            name: task.to_owned(),
            implementing_class: task,
        }
    }
}

/// A synthetic stage a stage plans before or after its own tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    /// Its type.
    pub stage_type: String,
    /// Its name.
    pub name: String,
    /// Its context.
    pub context: Map<String, Value>,
    /// Indices (in the same list) of the synthetic stages it waits for.
    pub after: Vec<usize>,
}

/// What a cancellation routine asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CancelOutcome {
    /// Keys merged into the stage's context (what was done).
    pub context: Map<String, Value>,
    /// Messages for other executions (cancel a child pipeline).
    pub messages: Vec<Message>,
}

/// A stage type.
#[async_trait]
pub trait StageDefinition: Send + Sync {
    /// The `type` string in pipeline JSON.
    fn stage_type(&self) -> &'static str;

    /// The tasks the stage runs, in order.
    fn tasks(&self, stage: &StageExecution) -> Vec<TaskSpec>;

    /// Context keys the engine leaves unevaluated when the stage starts, because the
    /// stage's tasks evaluate them themselves (in order, or later).
    fn deferred_context_keys(&self) -> &'static [&'static str] {
        &[]
    }

    /// Synthetic stages to run before the tasks.
    fn before_stages(&self, _stage: &StageExecution) -> Vec<SyntheticSpec> {
        Vec::new()
    }

    /// Synthetic stages to run after the tasks.
    fn after_stages(&self, _stage: &StageExecution) -> Vec<SyntheticSpec> {
        Vec::new()
    }

    /// Whether [`cancel`](Self::cancel) does anything (saves a queue hop when not).
    fn has_cancel_routine(&self) -> bool {
        false
    }

    /// Undoes or stops what a running stage started, when the execution is canceled or
    /// the stage skipped. Runs at least once; must be idempotent.
    async fn cancel(
        &self,
        _execution: &Execution,
        _stage: &StageExecution,
        _services: &Services,
    ) -> Result<CancelOutcome, TaskError> {
        Ok(CancelOutcome::default())
    }
}

/// The stage types and tasks the engine knows.
#[derive(Clone, Default)]
pub struct StageRegistry {
    stages: HashMap<String, Arc<dyn StageDefinition>>,
    tasks: HashMap<&'static str, Arc<dyn Task>>,
}

impl std::fmt::Debug for StageRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut types: Vec<&String> = self.stages.keys().collect();
        types.sort();
        f.debug_struct("StageRegistry")
            .field("stages", &types)
            .finish_non_exhaustive()
    }
}

impl StageRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The generic stages: wait, evaluateVariables, checkPreconditions,
    /// manualJudgment, webhook and pipeline.
    pub fn standard() -> Self {
        let mut registry = Self::new();
        crate::stages::register_all(&mut registry);
        registry
    }

    /// Adds a stage type.
    pub fn stage(&mut self, definition: impl StageDefinition + 'static) -> &mut Self {
        self.stages
            .insert(definition.stage_type().to_owned(), Arc::new(definition));
        self
    }

    /// Adds a task.
    pub fn task(&mut self, task: impl Task + 'static) -> &mut Self {
        self.tasks.insert(task.name(), Arc::new(task));
        self
    }

    /// The stage type called `stage_type`.
    pub fn definition(&self, stage_type: &str) -> Option<&Arc<dyn StageDefinition>> {
        self.stages.get(stage_type)
    }

    /// The task called `name`.
    pub fn task_named(&self, name: &str) -> Option<&Arc<dyn Task>> {
        self.tasks.get(name)
    }

    /// The registered stage types, sorted.
    pub fn stage_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self.stages.keys().map(String::as_str).collect();
        types.sort_unstable();
        types
    }
}

/// Synthetic stages that run one after another.
pub fn sequential(stages: Vec<(String, String, Map<String, Value>)>) -> Vec<SyntheticSpec> {
    stages
        .into_iter()
        .enumerate()
        .map(|(i, (stage_type, name, context))| SyntheticSpec {
            stage_type,
            name,
            context,
            after: if i == 0 { Vec::new() } else { vec![i - 1] },
        })
        .collect()
}

/// Synthetic stages that run side by side.
pub fn parallel(stages: Vec<(String, String, Map<String, Value>)>) -> Vec<SyntheticSpec> {
    stages
        .into_iter()
        .map(|(stage_type, name, context)| SyntheticSpec {
            stage_type,
            name,
            context,
            after: Vec::new(),
        })
        .collect()
}
