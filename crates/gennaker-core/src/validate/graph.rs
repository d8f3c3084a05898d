//! The stage DAG: duplicate refIds, dangling and self references, cycles.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::fields::type_name;
use super::stages::StageRef;
use crate::problems::{Problem, ValidationReport};
use crate::suggest;

pub(super) fn check_graph(stages: &[StageRef<'_>], report: &mut ValidationReport) {
    // refId -> indices of the stages that declare it, in document order.
    let mut declared: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for stage in stages {
        if let Some(id) = &stage.ref_id {
            declared.entry(id.as_str()).or_default().push(stage.index);
        }
    }
    for stage in stages {
        if let Some(id) = &stage.ref_id
            && let Some(owners) = declared.get(id.as_str())
            && owners.len() > 1
            && owners.first() != Some(&stage.index)
        {
            let list: Vec<String> = owners.iter().map(|i| format!("stages[{i}]")).collect();
            report.push(
                Problem::error(
                    stage.obj.at("refId"),
                    format!("duplicate refId '{id}': used by {}", list.join(", ")),
                )
                .with_hint("every stage needs its own refId"),
            );
        }
    }

    let mut edges: HashMap<usize, Vec<usize>> = HashMap::new();
    let known: Vec<&str> = declared.keys().copied().collect();
    for stage in stages {
        let key = "requisiteStageRefIds";
        let Some(value) = stage.obj.get(key) else {
            continue;
        };
        let Value::Array(items) = value else {
            report.push(Problem::error(
                stage.obj.at(key),
                format!("{key} must be an array of refIds, not {}", type_name(value)),
            ));
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let path = stage.obj.at(key).index(i);
            let target = match item {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => {
                    report.push(Problem::error(
                        path,
                        format!(
                            "a refId must be a string or a number, not {}",
                            type_name(other)
                        ),
                    ));
                    continue;
                }
            };
            if stage.ref_id.as_deref() == Some(target.as_str()) {
                report.push(
                    Problem::error(path, format!("stage '{target}' depends on itself"))
                        .with_hint("remove its own refId from requisiteStageRefIds"),
                );
                continue;
            }
            match declared
                .get(target.as_str())
                .and_then(|owners| owners.first())
            {
                Some(&dependency) => edges.entry(stage.index).or_default().push(dependency),
                None => {
                    let others = known
                        .iter()
                        .copied()
                        .filter(|k| Some(*k) != stage.ref_id.as_deref());
                    let mut problem = Problem::error(
                        path,
                        format!(
                            "requisiteStageRefIds names stage '{target}', but no stage has that refId{}",
                            suggest::did_you_mean(&target, others)
                        ),
                    );
                    problem = problem.with_hint(if known.is_empty() {
                        "no stage has a refId".to_owned()
                    } else {
                        format!("existing refIds: {}", known.join(", "))
                    });
                    report.push(problem);
                }
            }
        }
    }
    report_cycles(stages, &edges, report);
}

/// Finds cycles with a depth-first search over "depends on" edges and reports each once,
/// in execution order (`1 -> 3 -> 2 -> 1`: 3 runs after 1, 2 after 3, 1 after 2).
fn report_cycles(
    stages: &[StageRef<'_>],
    edges: &HashMap<usize, Vec<usize>>,
    report: &mut ValidationReport,
) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let by_index: HashMap<usize, &StageRef<'_>> = stages.iter().map(|s| (s.index, s)).collect();
    let mut mark: HashMap<usize, Mark> = stages.iter().map(|s| (s.index, Mark::New)).collect();

    for start in stages.iter().map(|s| s.index) {
        if mark.get(&start) != Some(&Mark::New) {
            continue;
        }
        // Iterative DFS: (node, next edge to follow); the stack is the current path.
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        mark.insert(start, Mark::Open);
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let deps = edges.get(&node).map_or(&[][..], Vec::as_slice);
            if let Some(&dep) = deps.get(*next) {
                *next += 1;
                match mark.get(&dep).copied().unwrap_or(Mark::Done) {
                    Mark::New => {
                        mark.insert(dep, Mark::Open);
                        stack.push((dep, 0));
                    }
                    Mark::Open => {
                        let from = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                        let cycle: Vec<usize> = stack[from..].iter().map(|(n, _)| *n).collect();
                        push_cycle(&cycle, &by_index, report);
                    }
                    Mark::Done => {}
                }
            } else {
                mark.insert(node, Mark::Done);
                stack.pop();
            }
        }
    }
}

fn push_cycle(
    cycle: &[usize],
    by_index: &HashMap<usize, &StageRef<'_>>,
    report: &mut ValidationReport,
) {
    // `cycle` follows "depends on" edges; execution order is the reverse.
    let mut order: Vec<usize> = cycle.iter().rev().copied().collect();
    // Start at the stage that comes first in the document, so the text is stable.
    if let Some(min_pos) = order
        .iter()
        .enumerate()
        .min_by_key(|(_, i)| **i)
        .map(|(p, _)| p)
    {
        order.rotate_left(min_pos);
    }
    let names: Vec<String> = order
        .iter()
        .filter_map(|i| by_index.get(i))
        .filter_map(|s| s.ref_id.clone())
        .collect();
    let Some(first) = order.first().and_then(|i| by_index.get(i)) else {
        return;
    };
    let Some(head) = names.first() else {
        return;
    };
    report.push(
        Problem::error(
            first.obj.at("requisiteStageRefIds"),
            format!("the stages form a cycle: {} -> {head}", names.join(" -> ")),
        )
        .with_hint("a pipeline is a DAG: remove one of these requisiteStageRefIds entries"),
    );
}
