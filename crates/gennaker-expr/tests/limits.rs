//! The sandbox and every limit: each exceeded bound is its own clear error, reached
//! quickly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use gennaker_expr::{ErrorKind, ExprError, FunctionRegistry, Limits, Template, evaluate_template};
use serde_json::{Value, json};

/// Generous for a debug build on a busy shared machine; a runaway would take minutes.
const QUICK: Duration = Duration::from_secs(20);

fn run(text: &str, context: &Value, limits: &Limits) -> Result<Value, ExprError> {
    let started = Instant::now();
    let result = evaluate_template(text, context, &FunctionRegistry::default(), limits);
    assert!(
        started.elapsed() < QUICK,
        "{text:.80} took {:?}",
        started.elapsed()
    );
    result
}

fn fails(text: &str, context: &Value, limits: &Limits) -> ExprError {
    match run(text, context, limits) {
        Ok(v) => panic!("{text:.80} evaluated to {v:.80}"),
        Err(e) => e,
    }
}

fn list(n: usize) -> String {
    let items: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    format!("{{{}}}", items.join(","))
}

#[test]
fn sandbox_constructs_are_parse_errors_that_say_why() {
    let limits = Limits::default();
    for (text, says) in [
        (
            "${T(java.lang.Runtime).getRuntime().exec('rm -rf /')}",
            "type references",
        ),
        (
            "${new java.lang.ProcessBuilder({'sh'}).start()}",
            "constructors",
        ),
        ("${@environment.getProperty('secret')}", "bean references"),
        ("${&bean}", "bean references"),
        ("${trigger.tag = 'x'}", "assignment"),
        ("${#root = {:}}", "assignment"),
        ("${#this = 1}", "assignment"),
        ("${parameters.n++}", "'++'"),
        ("${x instanceof T(String)}", "instanceof"),
    ] {
        let err = Template::parse(text, &limits).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unsupported, "{text}");
        assert!(err.message.contains(says), "{text}: {}", err.message);
        assert!(
            err.message.contains("not supported"),
            "{text}: {}",
            err.message
        );
    }
}

#[test]
fn reflection_is_not_reachable() {
    let ctx = json!({"s": "x"});
    let limits = Limits::default();
    for text in [
        "${s.getClass()}",
        "${s.getClass().forName('java.lang.Runtime')}",
        "${#root.getClass()}",
        "${{1}.getClass()}",
        "${1.getClass()}",
    ] {
        assert_eq!(fails(text, &ctx, &limits).kind, ErrorKind::Method, "{text}");
    }
    assert_eq!(fails("${s.class}", &ctx, &limits).kind, ErrorKind::Type);
}

#[test]
fn deep_nesting_hits_the_depth_limit() {
    let ctx = json!({"a": {}});
    let limits = Limits::default();
    let cases = [
        format!("${{{}1{}}}", "(".repeat(2000), ")".repeat(2000)),
        format!("${{{}1{}}}", "{".repeat(2000), "}".repeat(2000)),
        format!("${{{}true}}", "!".repeat(5000)),
        format!("${{{}1}}", "-".repeat(5000).replace("--", "- ")),
        format!("${{a{}}}", ".b".repeat(3000)),
        format!("${{a{}}}", "['b']".repeat(1500)),
        format!("${{1{}}}", "+1".repeat(4000)),
        format!("${{{}}}", "true ? ".repeat(500) + "1" + &" : 2".repeat(500)),
        format!("${{#f({}1{})}}", "#f(".repeat(1000), ")".repeat(1000)),
    ];
    for text in &cases {
        let err = fails(text, &ctx, &limits);
        assert_eq!(err.kind, ErrorKind::DepthLimit, "{text:.40}: {err}");
    }
    let shallow = Limits {
        max_depth: 8,
        ..Limits::default()
    };
    assert_eq!(
        fails("${a.b.c.d.e.f.g.h.i.j}", &ctx, &shallow).kind,
        ErrorKind::DepthLimit
    );
}

#[test]
fn nested_loops_hit_the_step_limit() {
    let ctx = json!({});
    let limits = Limits::default();
    let l = list(100);
    let text = format!("${{{l}.![{l}.![{l}.![#this]]]}}");
    let err = fails(&text, &ctx, &limits);
    assert_eq!(err.kind, ErrorKind::StepLimit, "{err}");
    assert!(err.message.contains("100000 steps"), "{err}");

    // Concatenation in a loop: the steps run out before memory does.
    let text = format!("${{{l}.![{l}.![{l}.!['abc' + #this + 'def']]].size()}}");
    assert_eq!(fails(&text, &ctx, &limits).kind, ErrorKind::StepLimit);

    // Copying a large borrowed value costs steps in proportion to its size.
    let big: Vec<Value> = (0..5_000).map(|i| json!({"i": i})).collect();
    let ctx = json!({"big": big});
    let text = format!("${{{}.![#root.big]}}", list(100));
    let few = Limits {
        max_steps: 10_000,
        ..Limits::default()
    };
    assert_eq!(fails(&text, &ctx, &few).kind, ErrorKind::StepLimit);
}

#[test]
fn string_doubling_hits_the_output_limit() {
    let ctx = json!({});
    let limits = Limits::default();
    let text = format!("${{{{'ab'}}{}}}", ".![#this + #this]".repeat(25));
    let err = fails(&text, &ctx, &limits);
    assert_eq!(err.kind, ErrorKind::OutputLimit, "{err}");
    assert!(err.message.contains("1048576 bytes"), "{err}");

    let text = format!("${{'x'{}}}", ".replace('x', 'xxxxxxxxxx')".repeat(8));
    assert_eq!(fails(&text, &ctx, &limits).kind, ErrorKind::OutputLimit);

    let grow = format!(".replaceAll('x', '{}')", "x".repeat(1000));
    let text = format!("${{'x'{}}}", grow.repeat(3));
    assert_eq!(fails(&text, &ctx, &limits).kind, ErrorKind::OutputLimit);

    let text = format!(
        "${{#toJson({{'a'}}{})}}",
        ".![#toJson(#this) + #toJson(#this)]".repeat(20)
    );
    assert_eq!(fails(&text, &ctx, &limits).kind, ErrorKind::OutputLimit);

    let small = Limits {
        max_string_length: 10,
        ..Limits::default()
    };
    assert_eq!(
        fails("a${'0123456789'}", &ctx, &small).kind,
        ErrorKind::OutputLimit
    );
    let ctx = json!({"big": (0..100).collect::<Vec<_>>()});
    assert_eq!(
        fails("${#toJson(big)}", &ctx, &small).kind,
        ErrorKind::Function
    );
    assert_eq!(
        fails("${big.toString()}", &ctx, &small).kind,
        ErrorKind::OutputLimit
    );
}

#[test]
fn large_collections_hit_the_collection_limit() {
    let ctx = json!({"csv": "a,".repeat(200)});
    let limits = Limits {
        max_collection_size: 100,
        ..Limits::default()
    };
    let err = fails(&format!("${{{}}}", list(101)), &ctx, &limits);
    assert_eq!(err.kind, ErrorKind::CollectionLimit, "{err}");
    assert!(err.message.contains("limit of 100 elements"), "{err}");
    assert_eq!(
        fails("${csv.split(',')}", &ctx, &limits).kind,
        ErrorKind::CollectionLimit
    );
    assert!(run(&format!("${{{}}}", list(100)), &ctx, &limits).is_ok());
}

#[test]
fn long_expressions_hit_the_length_limit_but_long_text_does_not() {
    let ctx = json!({});
    let limits = Limits::default();
    let long = format!("${{'{}'}}", "a".repeat(10_000));
    let err = fails(&long, &ctx, &limits);
    assert_eq!(err.kind, ErrorKind::LengthLimit, "{err}");
    let text = format!("{}${{1}}", "manifest line\n".repeat(5_000));
    assert!(run(&text, &ctx, &limits).is_ok());
}

#[test]
fn catastrophic_regexes_are_linear_or_refused() {
    let input = format!("{}!", "a".repeat(100_000));
    let ctx = json!({"s": input});
    let limits = Limits::default();
    for pattern in [
        "(a+)+$",
        "(a|a)*$",
        "(a|aa)+$",
        "(.*a){20}$",
        "^(([a-z])+.)+[A-Z]([a-z])+$",
    ] {
        let text = format!("${{s matches '{pattern}'}}");
        assert_eq!(
            run(&text, &ctx, &limits).unwrap(),
            json!(false),
            "{pattern}"
        );
    }
    let err = fails("${s matches 'a{1000}{1000}'}", &ctx, &limits);
    assert_eq!(err.kind, ErrorKind::Regex, "{err}");
    assert!(err.message.contains("too large"), "{err}");
    assert_eq!(
        fails("${s matches '(a)\\1'}", &ctx, &limits).kind,
        ErrorKind::Regex
    );
    let text = format!("${{{}.?[#root.s matches '(a+)+$'].size()}}", list(1000));
    let err = fails(&text, &ctx, &limits);
    assert_eq!(err.kind, ErrorKind::StepLimit, "{err}");
}

#[test]
fn yaml_bombs_are_bounded() {
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    let ctx = json!({"y": bomb});
    let limits = Limits::default();
    let err = fails("${#readYaml(y)}", &ctx, &limits);
    assert_eq!(err.kind, ErrorKind::Function, "{err}");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let ctx = json!({"j": deep});
    assert_eq!(
        fails("${#readJson(j)}", &ctx, &limits).kind,
        ErrorKind::Function
    );
}
