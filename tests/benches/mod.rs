//! The logic of `cargo bench --bench endpoints` (`connbench::bench`) end to end against the
//! built-in target: two runs into one store, the second with the endpoint made slower by the
//! target's `/delay`, must flag the regression against the previous run and against the first
//! endpoint; the reports are saved where the store says and read back as `connbench compare`
//! reads them.

use std::time::SystemTime;

use connbench::bench::{self, config, store::Store, table::Cell, Plan};
use connbench::metrics::Phase;
use connbench::report::schema::Verdict;

use crate::util::{http_url, serve, TempDir};

/// The bearer token `api` sends, from the environment: never printed or saved.
const SECRET: &str = "tok-e2e-9f8e7d";

/// Two runs of `ref` (always `/`) and `api` (`/` then `/delay/3000`), gate at 0 %.
#[test]
fn a_slower_endpoint_between_two_runs_is_flagged_as_a_regression() {
    let s = serve(|_| {});
    let dir = TempDir::new("bench-e2e");
    let store = Store::new(dir.path("store"));
    let plan = |api_path: &str| -> Plan {
        let text = format!(
            "rounds = 2\nround_duration = \"300ms\"\nconnections = 1\nrequests_per_conn = 10\n\
             [endpoints]\nref = \"{}\"\n[endpoints.api]\nurl = \"{}\"\n\
             headers = {{ Authorization = \"Bearer ${{E2E_TOKEN}}\" }}\n",
            http_url(&s, "/"),
            http_url(&s, api_path)
        );
        let env = |k: &str| (k == "E2E_TOKEN").then(|| SECRET.to_string());
        let c = config::parse("e2e.toml", &text, &env).expect("config");
        Plan {
            endpoints: c.endpoints,
            rounds: c.settings.rounds,
            gate: Some(c.settings.fail_threshold_pct),
            baseline: None,
            save_baseline: None,
        }
    };
    let run = |p: &Plan| {
        let id = bench::store::run_id(SystemTime::now(), std::process::id());
        let (mut out, mut log) = (Vec::new(), Vec::new());
        let o = bench::run(p, &store, &id, &mut out, &mut log).expect("bench run");
        let log = String::from_utf8(log).unwrap();
        // Interleaved: ref api ref api.
        let order: Vec<&str> = log
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("round "))
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(order, ["ref", "api", "ref", "api"], "{log}");
        assert_eq!(String::from_utf8(out).unwrap(), o.text);
        assert!(!log.contains(SECRET) && !o.text.contains(SECRET), "{log}");
        o
    };

    let first = run(&plan("/"));
    assert_eq!(first.code, 0, "nothing to regress from:\n{}", first.text);
    let ttfb = |o: &bench::Outcome, endpoint: &str| {
        o.tables
            .phases
            .iter()
            .find(|p| p.phase == Phase::Ttfb)
            .and_then(|p| p.rows.iter().find(|r| r.endpoint == endpoint))
            .cloned()
            .unwrap_or_else(|| panic!("no ttfb row for {endpoint}:\n{}", o.text))
    };
    assert_eq!(ttfb(&first, "api").vs_before[0], Cell::Missing("new"));

    let second = run(&plan("/delay/3000"));
    s.stop();
    assert_eq!(
        second.code, 1,
        "the regression fails the run:\n{}",
        second.text
    );
    let reg = second.tables.regression.as_ref().unwrap();
    for row in ["api: ttfb.p50", "api: total.p50"] {
        assert!(
            reg.failed.contains(&row.to_string()),
            "{row}: {reg:?}\n{}",
            second.text
        );
    }
    assert!(
        second.text.contains("regression  FAIL: "),
        "{}",
        second.text
    );
    let api = ttfb(&second, "api");
    // p50 (p99 needs more samples than 0.6 s of 3 ms responses give to be judged).
    for c in [&api.vs_before[0], &api.vs_first[0]] {
        match c {
            // 3 ms added to a loopback response: far more than doubled.
            Cell::Change(Some(pct), Verdict::Slower) => assert!(*pct > 100.0, "{c:?}"),
            other => panic!("{other:?}\n{}", second.text),
        }
    }
    // Every run is saved, and the previous run of `api` is the first one.
    let prev = store.previous(&second.run_id, "api").unwrap();
    assert_eq!(prev, store.run_dir(&first.run_id).join("api.json"));
    for id in [&first.run_id, &second.run_id] {
        for name in ["ref.json", "api.json", "tables.txt"] {
            assert!(store.run_dir(id).join(name).is_file(), "{id}/{name}");
        }
    }
    let saved = connbench::report::compare::load(
        &store
            .run_dir(&second.run_id)
            .join("api.json")
            .display()
            .to_string(),
    )
    .unwrap();
    assert!(saved.report.target.url.ends_with("/delay/3000"));
    for id in [&first.run_id, &second.run_id] {
        for name in ["ref.json", "api.json", "tables.txt"] {
            let text = std::fs::read_to_string(store.run_dir(id).join(name)).unwrap();
            assert!(!text.contains(SECRET), "{id}/{name} holds the token");
        }
    }
    let api_json = std::fs::read_to_string(store.run_dir(&second.run_id).join("api.json")).unwrap();
    assert!(
        api_json.contains("Authorization: [redacted]"),
        "the header is there, redacted"
    );
}
