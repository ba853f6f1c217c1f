//! Pictures: `connbench plot` on real reports and interval logs, and `--html` on `http`, `ws`,
//! `probe` and `merge`. Every run is short, against the built-in target on loopback.

use std::path::Path;

use crate::util::{assert_usage_error, connbench, connbench_raw, http_url, serve, TempDir};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// The texts of an SVG document (which must parse as XML, rooted at `<svg>`).
fn svg_texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("the SVG parses");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect()
}

/// An `--html` page: parsed as XML (its doctype allowed), checked to load nothing (no
/// element or attribute that fetches, no CSS url), returned with its text.
fn read_page(path: &Path) -> String {
    let html = std::fs::read_to_string(path).expect("--html page written");
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(&html, opts).expect("well-formed page");
    for n in doc.descendants().filter(|n| n.is_element()) {
        let name = n.tag_name().name();
        assert!(
            !["script", "link", "img", "image", "use", "iframe", "object", "embed"].contains(&name),
            "<{name}> in the page"
        );
        for a in n.attributes() {
            assert!(
                !["href", "src", "srcset", "action", "data"].contains(&a.name()),
                "<{name} {}=…> in the page",
                a.name()
            );
            assert!(!a.value().contains("url("), "url( in <{name}>");
        }
    }
    assert!(!html.contains("@import"), "@import in the page");
    html
}

#[test]
fn plot_draws_a_real_run_with_its_interval_log() {
    let srv = serve(|_| {});
    let dir = TempDir::new("plot-run");
    let (hlog, svg) = (dir.path("a.hlog"), dir.path("a.svg"));
    let url = http_url(&srv, "/");
    let r = connbench(&["http", &url, "-c", "2", "-d", "2s", "--hlog", s(&hlog)]);
    srv.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let json = dir.path("a.json");
    std::fs::write(&json, r.report().to_string()).expect("write report");
    let out = connbench_raw(&[
        "plot",
        s(&json),
        "--hlog",
        s(&hlog),
        "--label",
        "loopback",
        "-o",
        s(&svg),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let texts = svg_texts(&std::fs::read_to_string(&svg).expect("SVG written"));
    let n = r.u64("/phases/total/count");
    for want in [
        "connect: connect() → socket writable".to_string(),
        "ttfb: request written → first response byte".to_string(),
        "total: request written → response complete".to_string(),
        "percentile".to_string(),
        "0%".to_string(),
        "90%".to_string(),
        "99%".to_string(),
        "latency (log scale)".to_string(),
        "time since start (s)".to_string(),
        "loopback — throughput (responses/s)".to_string(),
        "p99".to_string(),
    ] {
        assert!(texts.contains(&want), "{want:?} not in {texts:?}");
    }
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with(&format!("loopback  n={n}  p99 "))),
        "legend with the run's count: {texts:?}"
    );
    assert!(!texts.iter().any(|t| t.starts_with("tls:")), "no TLS panel");
}

#[test]
fn plot_overlays_reports_and_draws_only_the_charts_and_phases_asked_for() {
    let srv = serve(|_| {});
    let fast = connbench(&["http", &http_url(&srv, "/"), "-c", "2", "-n", "2000"]);
    let slow = connbench(&[
        "http",
        &http_url(&srv, "/delay/2000"),
        "-c",
        "2",
        "-n",
        "200",
    ]);
    srv.stop();
    assert_eq!(
        (fast.code, slow.code),
        (0, 0),
        "{}{}",
        fast.stderr,
        slow.stderr
    );
    let dir = TempDir::new("plot-two");
    let (a, b) = (dir.path("fast.json"), dir.path("slow.json"));
    std::fs::write(&a, fast.report().to_string()).expect("write");
    std::fs::write(&b, slow.report().to_string()).expect("write");
    // -o - writes the SVG to stdout; the second report is named by its file.
    let out = connbench_raw(&[
        "plot",
        s(&a),
        s(&b),
        "--label",
        "fast",
        "--chart",
        "percentiles",
        "--phase",
        "total",
        "-o",
        "-",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let texts = svg_texts(&out.stdout);
    assert!(
        texts.iter().any(|t| t.starts_with("fast  n=2000  ")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("slow.json  n=200  p99 ")),
        "{texts:?}"
    );
    assert!(texts.contains(&"total: request written → response complete".to_string()));
    assert!(
        !texts.iter().any(|t| t.starts_with("ttfb:")),
        "--phase total only"
    );
    assert!(
        !texts.iter().any(|t| t.starts_with("connect:")),
        "--phase total only"
    );
    assert!(
        !texts.contains(&"time since start (s)".to_string()),
        "no time chart"
    );
    // The slow run's p99 (≥ 2 ms) is what its legend says.
    let p99 = slow.u64("/phases/total/p99");
    assert!(p99 >= 2_000_000, "{p99}");
}

#[test]
fn plot_draws_a_staged_run_against_connections() {
    let dir = TempDir::new("plot-stages");
    let r = connbench(&[
        "http",
        "--stages",
        "1@500ms+500ms,4@500ms+500ms",
        "--no-pin",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let json = dir.path("st.json");
    std::fs::write(&json, r.report().to_string()).expect("write");
    let svg = dir.path("st.svg");
    let out = connbench_raw(&["plot", s(&json), "--chart", "stages", "-o", s(&svg)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let texts = svg_texts(&std::fs::read_to_string(&svg).expect("written"));
    for want in [
        "connections",
        "error rate (%)",
        "st.json p50",
        "st.json p99",
    ] {
        assert!(
            texts.contains(&want.to_string()),
            "{want:?} not in {texts:?}"
        );
    }
    assert!(!texts.contains(&"percentile".to_string()), "stages only");
}

#[test]
fn html_pages_of_http_ws_probe_and_merge_hold_the_summary_and_the_plots() {
    let srv = serve(|_| {});
    let dir = TempDir::new("html");
    let page = |name: &str| dir.path(name);

    let h1 = page("http.html");
    let a = connbench(&[
        "http",
        &http_url(&srv, "/"),
        "-c",
        "2",
        "-d",
        "1500ms",
        "--html",
        s(&h1),
    ]);
    assert_eq!(a.code, 0, "{}", a.stderr);
    let html = read_page(&h1);
    for want in [
        "connect: connect()",
        "ttfb: request written",
        "total: request written",
    ] {
        assert!(html.contains(want), "{want:?} not in the http page");
    }
    assert!(html.contains("<pre class=\"summary\">"), "the text summary");
    assert!(html.contains("throughput"), "the summary's throughput line");
    assert_eq!(html.matches("<svg").count(), 2, "percentiles and over time");
    assert!(
        html.contains("id=\"time\""),
        "over time, from the run's own intervals"
    );

    let ws_page = page("ws.html");
    let url = http_url(&srv, "/ws").replace("http://", "ws://");
    let w = connbench(&[
        "ws",
        &url,
        "-c",
        "2",
        "-d",
        "1500ms",
        "--subscribe",
        r#"{"op":"subscribe","symbol":"X"}"#,
        "--ts-field",
        "timestamp",
        "--html",
        s(&ws_page),
    ]);
    assert_eq!(w.code, 0, "{}", w.stderr);
    let html = read_page(&ws_page);
    for want in [
        "upgrade: upgrade request",
        "first_message:",
        "latency: one-way",
    ] {
        assert!(html.contains(want), "{want:?} not in the ws page");
    }

    // A probe that finds a limit: a second target that resets past 10 connections.
    let limited = serve(|c| {
        c.max_conns = Some(10);
        c.over_limit = connbench::serve::OverLimit::Refuse;
    });
    let probe_page = page("probe.html");
    let p = connbench(&[
        "probe",
        &http_url(&limited, "/"),
        "--max",
        "20",
        "--connect-rate",
        "200",
        "--hold",
        "200ms",
        "--settle",
        "500ms",
        "--html",
        s(&probe_page),
    ]);
    limited.stop();
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert_eq!(p.u64("/probe/limit"), 10, "{}", p.stdout);
    let html = read_page(&probe_page);
    assert!(html.contains("connect: connect()"), "probe phases");
    assert!(html.contains("open connections"), "the ramp chart");
    assert!(
        html.contains("this probe  limit 10"),
        "the limit in the legend"
    );
    assert!(
        html.contains("first failure: connect_reset"),
        "the first failure"
    );
    // The same probe through `plot --chart ramp`.
    let pj = page("probe.json");
    std::fs::write(&pj, p.report().to_string()).expect("write");
    let ramp = connbench_raw(&["plot", s(&pj), "--chart", "ramp", "-o", "-"]);
    assert_eq!(ramp.code, 0, "{}", ramp.stderr);
    let texts = svg_texts(&ramp.stdout);
    assert!(texts.contains(&"open connections".to_string()), "{texts:?}");
    assert!(
        texts.contains(&"probe.json  limit 10".to_string()),
        "{texts:?}"
    );
    assert!(!texts.contains(&"percentile".to_string()), "ramp only");

    let b = connbench(&["http", &http_url(&srv, "/"), "-c", "2", "-n", "500"]);
    srv.stop();
    assert_eq!(b.code, 0, "{}", b.stderr);
    let (ja, jb) = (page("a.json"), page("b.json"));
    std::fs::write(&ja, a.report().to_string()).expect("write");
    std::fs::write(&jb, b.report().to_string()).expect("write");
    let merge_page = page("merge.html");
    let m = connbench_raw(&[
        "merge",
        s(&ja),
        s(&jb),
        "--allow-disjoint",
        "--html",
        s(&merge_page),
    ]);
    assert_eq!(m.code, 0, "{}", m.stderr);
    let html = read_page(&merge_page);
    assert!(html.contains("merged 2 http reports"), "the merge summary");
    let n = a.u64("/phases/total/count") + b.u64("/phases/total/count");
    assert!(
        html.contains(&format!("merged  n={n}  p99 ")),
        "the merged curve"
    );
}

#[test]
fn plot_and_html_refuse_bad_input_with_one_line() {
    let dir = TempDir::new("plot-bad");
    let srv = serve(|_| {});
    let r = connbench(&["http", &http_url(&srv, "/"), "-c", "1", "-n", "100"]);
    srv.stop();
    let good = dir.path("good.json");
    std::fs::write(&good, r.report().to_string()).expect("write");
    let out = dir.path("o.svg");
    let plot = |extra: &[&str]| {
        let mut args = vec!["plot", s(&good), "-o", s(&out)];
        args.extend_from_slice(extra);
        connbench_raw(&args)
    };
    assert_usage_error(
        &plot(&["--label", "a", "--label", "b"]),
        "--label given 2 times",
    );
    assert_usage_error(&plot(&["--chart", "time"]), "--chart time needs");
    assert_usage_error(
        &plot(&["--chart", "stages"]),
        "--chart stages needs a staged run",
    );
    assert_usage_error(
        &plot(&["--chart", "ramp"]),
        "--chart ramp needs a probe report",
    );
    assert_usage_error(&plot(&["--phase", "ttbf"]), "unknown phase \"ttbf\"");
    assert_usage_error(
        &plot(&["--phase", "tls"]),
        "--phase tls: no report has samples",
    );
    let junk = dir.path("junk.hlog");
    std::fs::write(&junk, "not a log\n").expect("write");
    assert_usage_error(&plot(&["--hlog", s(&junk)]), "junk.hlog: ");
    let text = dir.path("text.json");
    std::fs::write(&text, "connbench 0.1.0 http ...").expect("write");
    assert_usage_error(
        &connbench_raw(&["plot", s(&text), "-o", s(&out)]),
        "text.json: not valid JSON",
    );
    assert_usage_error(
        &connbench_raw(&["plot", s(&dir.path("missing.json")), "-o", s(&out)]),
        "missing.json: cannot read",
    );
    assert!(!out.exists(), "nothing written on bad input");
    for cmd in [
        &["http", "-n", "1"][..],
        &["probe", "--max", "1"],
        &["merge", s(&good)],
    ] {
        let mut args = cmd.to_vec();
        args.extend(["--html", "-"]);
        assert_usage_error(&connbench_raw(&args), "--html writes a page to a file");
    }
}
