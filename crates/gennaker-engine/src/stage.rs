//! Stage types: what a stage is (its descriptor), what its fields must look like (its
//! rules), what it expands into (tasks, synthetic stages) and how it is canceled. Each
//! type is defined once, next to its code, and registered with its tasks in a
//! [`StageRegistry`], whose [`StageCatalog`] the validator and the API read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use gennaker_core::stage_types::{StageCatalog, StageRules, StageTypeDescriptor};
use gennaker_core::{CheckContext, Fields, ValidationReport};
use serde_json::{Map, Value};

use crate::message::Message;
use crate::precondition::Precondition;
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
    /// What the type is: its `type` string and aliases, label, description, and the
    /// cloud providers it acts through.
    fn descriptor(&self) -> StageTypeDescriptor;

    /// Save-time checks of the stage's own fields (run on every pipeline save and
    /// `gennaker pipeline validate`).
    fn check(
        &self,
        _stage: &Fields<'_>,
        _context: &CheckContext<'_>,
        _report: &mut ValidationReport,
    ) {
    }

    /// Rewrites the stage's context as it starts, before `stageEnabled` and its
    /// expressions are evaluated: a preconfigured stage puts in the settings its
    /// configuration fixes.
    fn prepare(&self, _context: &mut Map<String, Value>) {}

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

    /// Synthetic stages to run when the stage fails (Orca's `onFailureStages`): once its
    /// before stages, tasks or after stages have halted (or failed with
    /// `continuePipeline`), these replace its after stages that had not started, run,
    /// and the stage then ends with its failure all the same. Planned at most once.
    fn on_failure_stages(&self, _stage: &StageExecution) -> Vec<SyntheticSpec> {
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

/// The precondition types of `checkPreconditions`, by `type`.
pub(crate) type PreconditionTypes = BTreeMap<&'static str, Arc<dyn Precondition>>;

/// The stage types, precondition types and tasks the engine knows, and the catalog
/// (these types plus Spinnaker's others as Spinnaker-only) that validation and the API
/// read.
#[derive(Clone)]
pub struct StageRegistry {
    stages: HashMap<String, Arc<dyn StageDefinition>>,
    tasks: HashMap<&'static str, Arc<dyn Task>>,
    preconditions: PreconditionTypes,
    catalog: StageCatalog,
}

impl Default for StageRegistry {
    fn default() -> Self {
        Self {
            stages: HashMap::new(),
            tasks: HashMap::new(),
            preconditions: BTreeMap::new(),
            catalog: StageCatalog::spinnaker(),
        }
    }
}

/// A definition's [`StageDefinition::check`], as the catalog's rules.
struct DefinitionRules(Arc<dyn StageDefinition>);

impl StageRules for DefinitionRules {
    fn check(&self, stage: &Fields<'_>, context: &CheckContext<'_>, report: &mut ValidationReport) {
        self.0.check(stage, context, report);
    }
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
    /// A registry with no runnable stage types (Spinnaker's are in its catalog, as
    /// Spinnaker-only).
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

    /// Adds a stage type (replacing one of the same name).
    pub fn stage(&mut self, definition: impl StageDefinition + 'static) -> &mut Self {
        self.stage_shared(Arc::new(definition))
    }

    /// Adds a stage type held elsewhere too.
    pub fn stage_shared(&mut self, definition: Arc<dyn StageDefinition>) -> &mut Self {
        let descriptor = definition.descriptor();
        let name = descriptor.stage_type.clone();
        let rules: Arc<dyn StageRules> = Arc::new(DefinitionRules(definition.clone()));
        self.catalog.register(descriptor, Some(rules));
        self.stages.insert(name, definition);
        self
    }

    /// Adds a task.
    pub fn task(&mut self, task: impl Task + 'static) -> &mut Self {
        self.tasks.insert(task.name(), Arc::new(task));
        self
    }

    /// Adds a precondition type of `checkPreconditions` (replacing one of the same
    /// `type`) with its task, and (re-)registers `checkPreconditions` to plan, check
    /// and run the types registered so far.
    pub fn precondition(&mut self, precondition: impl Precondition + 'static) -> &mut Self {
        let precondition = Arc::new(precondition);
        self.tasks.insert(precondition.name(), precondition.clone());
        self.preconditions
            .insert(precondition.precondition_type(), precondition);
        crate::stages::register_check_preconditions(self);
        self
    }

    /// The precondition types of `checkPreconditions`, by `type`.
    pub(crate) fn preconditions(&self) -> &PreconditionTypes {
        &self.preconditions
    }

    /// The runnable stage type called `stage_type` (or one of its aliases).
    pub fn definition(&self, stage_type: &str) -> Option<&Arc<dyn StageDefinition>> {
        self.stages.get(stage_type).or_else(|| {
            self.catalog
                .canonical(stage_type)
                .and_then(|canonical| self.stages.get(canonical))
        })
    }

    /// Every stage type known, runnable or Spinnaker-only.
    pub fn catalog(&self) -> &StageCatalog {
        &self.catalog
    }

    /// Records the cloud providers stages may deploy through, so that validation reports
    /// a stage naming another one.
    pub fn set_cloud_providers(&mut self, providers: impl IntoIterator<Item = String>) {
        self.catalog.set_cloud_providers(providers);
    }

    /// Sets how many stages a pipeline may have, at save and at run (see
    /// [`StageCatalog::set_max_stages`]).
    pub fn set_max_pipeline_stages(&mut self, max: usize) {
        self.catalog.set_max_stages(max);
    }

    /// The task called `name`.
    pub fn task_named(&self, name: &str) -> Option<&Arc<dyn Task>> {
        self.tasks.get(name)
    }

    /// The precondition types `checkPreconditions` checks, sorted.
    pub fn precondition_types(&self) -> Vec<&'static str> {
        self.preconditions.keys().copied().collect()
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
