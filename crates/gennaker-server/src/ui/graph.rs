//! The stage graph of an execution, laid out on the server for an SVG.
//!
//! Nodes are the top-level stages; an edge runs from each stage named in a stage's
//! `requisiteStageRefIds` to it. A stage's column is the length of the longest path to
//! it from a stage with no requisites, so parallel branches stand in one column, one
//! above the other, in the order the pipeline lists them. Synthetic stages are not
//! nodes: their parent's node counts them, and the stage list shows them collapsible.

use std::collections::HashMap;

use gennaker_core::execution::{Execution, StageExecution};

/// A node's width in the SVG.
pub(crate) const NODE_WIDTH: i64 = 168;
/// A node's height.
pub(crate) const NODE_HEIGHT: i64 = 48;
const COLUMN_GAP: i64 = 40;
const ROW_GAP: i64 = 14;
const MARGIN: i64 = 8;

/// One stage in the graph.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// The stage's id (links to its detail).
    pub id: String,
    /// Its name, shortened to fit.
    pub label: String,
    /// Its full name, for the tooltip.
    pub name: String,
    /// Its status (`SUCCEEDED`), also its CSS class.
    pub status: &'static str,
    /// Its duration so far, or empty.
    pub duration: String,
    /// Synthetic stages under it.
    pub synthetic: usize,
    /// Top-left corner.
    pub x: i64,
    /// Top-left corner.
    pub y: i64,
}

/// An edge from one node's right side to another's left side, as an SVG path.
#[derive(Debug, Clone)]
pub(crate) struct Edge {
    /// The path's `d` attribute.
    pub path: String,
}

/// The laid-out graph.
#[derive(Debug, Clone, Default)]
pub(crate) struct Graph {
    /// The nodes.
    pub nodes: Vec<Node>,
    /// The edges.
    pub edges: Vec<Edge>,
    /// The SVG's width.
    pub width: i64,
    /// The SVG's height.
    pub height: i64,
}

/// A name cut to `max` characters with an ellipsis.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
        short.push('…');
        short
    }
}

/// Columns of the top-level stages: the longest path from a root. A requisite that
/// names no stage is ignored; a cycle (which validation refuses) cannot loop, since a
/// column never exceeds the number of stages.
fn columns(stages: &[&StageExecution]) -> Vec<usize> {
    let index: HashMap<&str, usize> = stages
        .iter()
        .enumerate()
        .map(|(i, stage)| (stage.ref_id.as_str(), i))
        .collect();
    let requisites: Vec<Vec<usize>> = stages
        .iter()
        .map(|stage| {
            stage
                .requisite_stage_ref_ids
                .iter()
                .filter_map(|r| index.get(r.as_str()).copied())
                .collect()
        })
        .collect();
    let mut column = vec![0usize; stages.len()];
    // Relaxation rounds: each round settles at least one more level of the DAG.
    for _ in 0..stages.len() {
        let mut changed = false;
        for (i, reqs) in requisites.iter().enumerate() {
            let wanted = reqs
                .iter()
                .map(|&r| column[r] + 1)
                .max()
                .unwrap_or(0)
                .min(stages.len());
            if wanted > column[i] {
                column[i] = wanted;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    column
}

/// Lays out `execution`'s top-level stages; `duration` formats a stage's running time.
pub(crate) fn layout(execution: &Execution, duration: impl Fn(&StageExecution) -> String) -> Graph {
    let stages: Vec<&StageExecution> = execution.top_level_stages().collect();
    if stages.is_empty() {
        return Graph::default();
    }
    let mut synthetic: HashMap<&str, usize> = HashMap::new();
    for stage in &execution.stages {
        if let Some(parent) = &stage.parent_stage_id {
            *synthetic.entry(parent.as_str()).or_default() += 1;
        }
    }
    let column = columns(&stages);
    let mut rows_in_column: HashMap<usize, i64> = HashMap::new();
    let mut position: HashMap<&str, (i64, i64)> = HashMap::new();
    let mut nodes = Vec::with_capacity(stages.len());
    for (i, stage) in stages.iter().enumerate() {
        let row = rows_in_column.entry(column[i]).or_default();
        let col = i64::try_from(column[i]).unwrap_or(i64::MAX / 4);
        let x = MARGIN + col * (NODE_WIDTH + COLUMN_GAP);
        let y = MARGIN + *row * (NODE_HEIGHT + ROW_GAP);
        *row += 1;
        position.insert(stage.ref_id.as_str(), (x, y));
        nodes.push(Node {
            id: stage.id.clone(),
            label: shorten(&stage.name, 22),
            name: stage.name.clone(),
            status: stage.status.as_str(),
            duration: duration(stage),
            synthetic: synthetic.get(stage.id.as_str()).copied().unwrap_or(0),
            x,
            y,
        });
    }
    let mut edges = Vec::new();
    for stage in &stages {
        let Some(&(x2, y2)) = position.get(stage.ref_id.as_str()) else {
            continue;
        };
        for requisite in &stage.requisite_stage_ref_ids {
            let Some(&(x1, y1)) = position.get(requisite.as_str()) else {
                continue;
            };
            let (sx, sy) = (x1 + NODE_WIDTH, y1 + NODE_HEIGHT / 2);
            let (ex, ey) = (x2, y2 + NODE_HEIGHT / 2);
            let bend = (ex - sx) / 2;
            edges.push(Edge {
                path: format!(
                    "M{sx} {sy} C{} {sy} {} {ey} {ex} {ey}",
                    sx + bend,
                    ex - bend
                ),
            });
        }
    }
    let width = nodes.iter().map(|n| n.x).max().unwrap_or(0) + NODE_WIDTH + MARGIN;
    let height = nodes.iter().map(|n| n.y).max().unwrap_or(0) + NODE_HEIGHT + MARGIN;
    Graph {
        nodes,
        edges,
        width,
        height,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn execution(stages: serde_json::Value) -> Execution {
        serde_json::from_value(json!({
            "id": "e", "type": "PIPELINE", "application": "a", "name": "p",
            "status": "RUNNING", "buildTime": 1, "authentication": {"user": "u"},
            "origin": "api", "trigger": {}, "stages": stages,
        }))
        .unwrap()
    }

    fn stage(id: &str, requisites: &[&str], parent: Option<&str>) -> serde_json::Value {
        json!({"id": id, "refId": id, "type": "wait", "name": format!("stage {id}"),
            "status": "SUCCEEDED", "context": {}, "outputs": {}, "tasks": [],
            "requisiteStageRefIds": requisites, "parentStageId": parent,
            "syntheticStageOwner": parent.map(|_| "STAGE_BEFORE")})
    }

    #[test]
    fn parallel_branches_share_a_column_and_joins_follow_the_longest_path() {
        // 1 → (2, 3) ; 3 → 4 ; (2, 4) → 5 ; 2 has one synthetic stage.
        let e = execution(json!([
            stage("1", &[], None),
            stage("2", &["1"], None),
            stage("2s", &[], Some("2")),
            stage("3", &["1"], None),
            stage("4", &["3"], None),
            stage("5", &["2", "4"], None),
        ]));
        let graph = layout(&e, |_| String::new());
        let at: HashMap<&str, (i64, i64)> = graph
            .nodes
            .iter()
            .map(|n| (n.id.as_str(), (n.x, n.y)))
            .collect();
        assert_eq!(graph.nodes.len(), 5, "synthetic stages are not nodes");
        assert_eq!(
            at["2"].0, at["3"].0,
            "parallel branches stand in one column"
        );
        assert!(at["3"].1 > at["2"].1, "one above the other");
        assert!(at["5"].0 > at["4"].0 && at["4"].0 > at["3"].0);
        assert_eq!(graph.edges.len(), 5);
        let two = graph.nodes.iter().find(|n| n.id == "2").unwrap();
        assert_eq!(two.synthetic, 1);
        assert!(graph.width >= at["5"].0 + NODE_WIDTH);
    }

    #[test]
    fn cycles_and_unknown_requisites_do_not_loop() {
        let e = execution(json!([
            stage("1", &["2"], None),
            stage("2", &["1", "nope"], None)
        ]));
        let graph = layout(&e, |_| String::new());
        assert_eq!(graph.nodes.len(), 2);
        assert!(graph.nodes.iter().all(|n| n.x <= 8 + 2 * (NODE_WIDTH + 40)));
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
    }
}
