//! The syntax tree of one expression.

use serde_json::Value;

/// A node and its place in the template text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    /// Start of the whole node (for describing a target: "on trigger").
    pub(crate) start: usize,
    /// End of the whole node.
    pub(crate) end: usize,
    /// Where an error about this node points: the property name, the operator…
    pub(crate) at: usize,
    /// Height of the subtree; bounded by `Limits::max_depth` so evaluation, which
    /// recurses along it, cannot overflow the stack.
    pub(crate) height: u32,
}

/// Which elements a selection keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selection {
    /// `.?[ ]`
    All,
    /// `.^[ ]`
    First,
    /// `.$[ ]`
    Last,
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnaryOp {
    Not,
    Neg,
    Plus,
}

/// Binary operators; `and`/`or` short-circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Matches,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl BinaryOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Self::Or => "or",
            Self::And => "and",
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Matches => "matches",
            Self::Add => "+",
            Self::Sub => "-",
            Self::Mul => "*",
            Self::Div => "/",
            Self::Mod => "%",
        }
    }
}

/// A key of an inline map: a bare name is the key itself, as in SpEL (`{a: 1}`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MapKey {
    Name(String),
    Expr(Node),
}

/// The node kinds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeKind {
    /// `null`, `true`, `42`, `2.5`, `'text'`: built once at parse time and lent to
    /// every evaluation.
    Literal(Value),
    List(Vec<Node>),
    Map(Vec<(MapKey, Node)>),
    /// A bare name: a property of the active object (`#this`, or the root).
    Ident(String),
    /// `#this`.
    This,
    /// `#root`.
    Root,
    /// `#name`: a host variable.
    Var(String),
    /// `#name(args)`: a host function.
    Call {
        name: String,
        args: Vec<Node>,
    },
    Property {
        target: Box<Node>,
        name: String,
        safe: bool,
    },
    Index {
        target: Box<Node>,
        index: Box<Node>,
        safe: bool,
    },
    /// `target.name(args)`; without a target, a method of the active object.
    Method {
        target: Option<Box<Node>>,
        name: String,
        args: Vec<Node>,
        safe: bool,
    },
    Select {
        target: Box<Node>,
        which: Selection,
        condition: Box<Node>,
        safe: bool,
    },
    Project {
        target: Box<Node>,
        expr: Box<Node>,
        safe: bool,
    },
    Unary {
        op: UnaryOp,
        operand: Box<Node>,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    Ternary {
        condition: Box<Node>,
        then: Box<Node>,
        otherwise: Box<Node>,
    },
    Elvis {
        value: Box<Node>,
        fallback: Box<Node>,
    },
}

impl NodeKind {
    /// Height of the tallest child subtree (0 for a leaf).
    pub(crate) fn child_height(&self) -> u32 {
        let mut max = 0;
        self.for_each_child(&mut |child| max = max.max(child.height));
        max
    }

    fn for_each_child<'n>(&'n self, visit: &mut dyn FnMut(&'n Node)) {
        match self {
            NodeKind::Call { args, .. } | NodeKind::List(args) => args.iter().for_each(visit),
            NodeKind::Map(entries) => {
                for (key, value) in entries {
                    if let MapKey::Expr(key) = key {
                        visit(key);
                    }
                    visit(value);
                }
            }
            NodeKind::Property { target, .. } => visit(target),
            NodeKind::Index { target, index, .. } => {
                visit(target);
                visit(index);
            }
            NodeKind::Method { target, args, .. } => {
                if let Some(target) = target {
                    visit(target);
                }
                args.iter().for_each(visit);
            }
            NodeKind::Select {
                target, condition, ..
            } => {
                visit(target);
                visit(condition);
            }
            NodeKind::Project { target, expr, .. } => {
                visit(target);
                visit(expr);
            }
            NodeKind::Unary { operand, .. } => visit(operand),
            NodeKind::Binary { lhs, rhs, .. } => {
                visit(lhs);
                visit(rhs);
            }
            NodeKind::Ternary {
                condition,
                then,
                otherwise,
            } => {
                visit(condition);
                visit(then);
                visit(otherwise);
            }
            NodeKind::Elvis { value, fallback } => {
                visit(value);
                visit(fallback);
            }
            NodeKind::Literal(_)
            | NodeKind::Ident(_)
            | NodeKind::This
            | NodeKind::Root
            | NodeKind::Var(_) => {}
        }
    }
}

impl Node {
    /// Calls `visit` with the name and position of every `#name(...)` call.
    pub(crate) fn for_each_call<'n>(&'n self, visit: &mut dyn FnMut(&'n str, usize)) {
        if let NodeKind::Call { name, .. } = &self.kind {
            visit(name, self.at);
        }
        self.kind
            .for_each_child(&mut |child| child.for_each_call(&mut *visit));
    }
}
