//! `--html FILE`: one self-contained page per run — the text summary (the same redacted text
//! the terminal shows) and the run's plots as inline SVG, styled by inline CSS.
//!
//! Rules:
//! 1. Nothing is fetched to show the page: no script, no stylesheet, image or font link, no
//!    `url(…)`. A Content-Security-Policy (`default-src 'none'`, inline styles only) makes a
//!    browser refuse any fetch a future change might add, and say so on its console, which
//!    `scripts/html-check.sh` turns into a failure.
//! 2. Every text is escaped; the summary is already redacted by the text report.
//! 3. The markup is well-formed XML as well as HTML (void elements closed, only the five XML
//!    entities), so the tests read it with an XML parser.

use std::io::{self, Write};

use super::plot::{self, Chart, PlotError, Source};

/// What a figure shows, under it.
fn caption(chart: Chart) -> &'static str {
    match chart {
        Chart::Percentiles => {
            "Each phase's latency distribution from its HdrHistogram: x is the percentile on a \
             log scale (0 %, 90 %, 99 %, 99.9 % …), y the latency. A curve ends where its \
             largest sample lies (one sample in count)."
        }
        Chart::Time => {
            "Per interval (one second): p50, p99 and largest latency of the phase, and its \
             samples per second. Grey lines: stage windows (solid: a ramp starts, dashed: a \
             hold starts)."
        }
        Chart::Stages => {
            "One point per stage, from its hold window (its ramp when it has no hold): latency \
             p50 (circles) and p99 (triangles), and the share of failures."
        }
        Chart::Ramp => {
            "Connections open while the probe ramped up: the dashed line is the limit found \
             (none when every connection up to --max was established), the red line the \
             first failure."
        }
    }
}

/// Escape text for HTML and XML (text and attribute values).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
body{font-family:sans-serif;margin:1.5em auto;max-width:1240px;padding:0 1em;color:#222;background:#fff}\
h1{font-size:1.3em;margin:0 0 .3em}\
h2{font-size:1.1em;margin:1.6em 0 .4em}\
pre{background:#f6f6f6;border:1px solid #ddd;padding:.8em;overflow-x:auto;font-size:13px;line-height:1.35}\
figure{margin:1em 0}\
figure svg{max-width:100%;height:auto;border:1px solid #eee}\
figcaption{color:#555;font-size:.9em;margin-top:.3em}\
p.note{color:#8a4b00}";

/// The page: `title`, the text `summary` in a `<pre>`, then each figure with its caption, and
/// `note` (why there is no plot) when there is one.
pub fn page(title: &str, summary: &str, figures: &[(Chart, String)], note: Option<&str>) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'\"/>\n",
    );
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n");
    out.push_str(&format!("<title>{}</title>\n", escape(title)));
    out.push_str(&format!("<style>{STYLE}</style>\n</head>\n<body>\n"));
    out.push_str(&format!("<h1>{}</h1>\n", escape(title)));
    out.push_str("<h2>Summary</h2>\n<pre class=\"summary\">");
    out.push_str(&escape(summary.trim_end()));
    out.push_str("</pre>\n");
    if let Some(n) = note {
        out.push_str(&format!("<p class=\"note\">{}</p>\n", escape(n)));
    }
    for (chart, svg) in figures {
        out.push_str(&format!(
            "<h2>{}</h2>\n<figure id=\"{}\">\n",
            match chart {
                Chart::Percentiles => "Percentiles",
                Chart::Time => "Over time",
                Chart::Stages => "Stages",
                Chart::Ramp => "Ramp",
            },
            chart.name()
        ));
        out.push_str(svg.trim());
        out.push_str(&format!(
            "\n<figcaption>{}</figcaption>\n</figure>\n",
            escape(caption(*chart))
        ));
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// The page of one run (or probe, or merge): its default charts, or a note saying why there
/// are none (no samples) or why they could not be drawn.
pub fn run_page(title: &str, summary: &str, sources: &[Source]) -> String {
    match plot::render_each(sources, &plot::Options::default()) {
        Ok(figures) => page(title, summary, &figures, None),
        Err(PlotError::Nothing(_)) => page(
            title,
            summary,
            &[],
            Some("No plots: the run recorded no latency sample."),
        ),
        Err(e) => page(title, summary, &[], Some(&e.to_string())),
    }
}

/// Write `html` to the file `path` (created or truncated).
pub fn write(path: &str, html: &str) -> io::Result<()> {
    let mut f = io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(html.as_bytes())?;
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page read as XML (its `<!DOCTYPE html>` allowed).
    pub(crate) fn parse_page(html: &str) -> roxmltree::Document<'_> {
        let opts = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        roxmltree::Document::parse_with_options(html, opts).expect("the page is well-formed")
    }

    #[test]
    fn escape_covers_markup_characters() {
        assert_eq!(
            escape(r#"<a href="x">Tom & Jerry's</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;"
        );
    }

    #[test]
    fn a_page_without_samples_says_so_and_is_well_formed() {
        let html = page(
            "t <1>",
            "phase  count\nconnect  0",
            &[],
            Some("No plots: none"),
        );
        let doc = parse_page(&html);
        assert_eq!(
            doc.descendants()
                .find(|n| n.has_tag_name("title"))
                .and_then(|n| n.text()),
            Some("t <1>")
        );
        assert!(html.contains("<p class=\"note\">No plots: none</p>"));
        assert!(!html.contains("<figure"));
    }

    /// The elements a page may have: its own markup and plotters' SVG shapes. Anything that
    /// can load something (script, link, img, image, use, iframe, object, …) is not here.
    const ALLOWED: [&str; 19] = [
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "h1",
        "h2",
        "pre",
        "p",
        "figure",
        "figcaption",
        "svg",
        "rect",
        "text",
        "line",
        "polyline",
        "circle",
        "polygon",
    ];

    /// Every way an element of `html` could make a browser fetch something, as a list of
    /// findings (empty: self-contained).
    pub(crate) fn external_references(html: &str) -> Vec<String> {
        let doc = parse_page(html);
        let mut found = Vec::new();
        for n in doc.descendants().filter(|n| n.is_element()) {
            let name = n.tag_name().name();
            if !ALLOWED.contains(&name) {
                found.push(format!("element <{name}>"));
            }
            for a in n.attributes() {
                let an = a.name().to_ascii_lowercase();
                if [
                    "href",
                    "src",
                    "srcset",
                    "action",
                    "data",
                    "poster",
                    "background",
                ]
                .contains(&an.as_str())
                {
                    found.push(format!("<{name} {an}=…>"));
                }
                if a.value().contains("url(") {
                    found.push(format!("<{name} {an}> has url("));
                }
                if an == "http-equiv" && a.value().eq_ignore_ascii_case("refresh") {
                    found.push("meta refresh".to_string());
                }
            }
            if name == "style" {
                let css = n.text().unwrap_or("");
                if css.contains("url(") || css.contains("@import") {
                    found.push("<style> loads something".to_string());
                }
            }
        }
        found
    }

    #[test]
    fn a_run_page_is_self_contained_and_shows_the_summary_and_plots() {
        use crate::metrics::{Phase, Recorder};
        use crate::plan::Mode;
        use crate::report::{host::HostFacts, json, plot::Doc, plot::Timeline, RunMeta, RunResult};
        use std::time::{Duration, UNIX_EPOCH};
        let mut rec = Recorder::new();
        for i in 1..=500u64 {
            rec.record(Phase::Total, 50_000 + i * 100);
            rec.record(Phase::Ttfb, 40_000 + i * 100);
        }
        let run = RunResult {
            recorder: rec,
            workers: Vec::new(),
            started_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            elapsed: Duration::from_secs(1),
            interrupted: false,
            peak_rss_bytes: 0,
            peak_open: 0,
            intervals: Vec::new(),
            stages: Vec::new(),
            worker_panics: Vec::new(),
            time_wait: None,
        };
        let meta = RunMeta::new(Mode::Http, "http://127.0.0.1:1/");
        let src = Source {
            label: "this run".into(),
            doc: Doc::Run(Box::new(json::report(&meta, &run, &HostFacts::collect()))),
            timeline: Some(Timeline::from_intervals(&run.intervals)),
        };
        let summary = "connbench 0.1.0  http  http://127.0.0.1:1/\nphase  count\nttfb  500 <&>";
        let html = run_page("connbench http <script>", summary, &[src]);
        assert_eq!(external_references(&html), Vec::<String>::new(), "{html}");
        assert!(html.contains("default-src 'none'"), "CSP");
        assert!(html.contains("ttfb  500 &lt;&amp;&gt;"), "summary escaped");
        assert!(html.contains("<title>connbench http &lt;script&gt;</title>"));
        assert_eq!(html.matches("<svg").count(), 1, "one chart: percentiles");
        assert!(html.contains("ttfb: request written"), "a panel per phase");
        assert!(html.contains("total: request written"), "a panel per phase");
        // The finder finds what it looks for.
        let bad = html.replace(
            "</body>",
            "<img src=\"http://127.0.0.1:1/x.png\"/><p style=\"background:url(x)\">x</p></body>",
        );
        assert_eq!(
            external_references(&bad),
            ["element <img>", "<img src=…>", "<p style> has url("]
        );
    }
}
