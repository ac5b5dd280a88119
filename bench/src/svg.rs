//! A hand-written SVG bar chart of latency percentiles per operation, on a log scale (status polls take a
//! fraction of a millisecond, joins may take seconds).

use std::fmt::Write;

/// One operation's bars.
#[derive(Debug, Clone)]
pub struct ChartRow {
    pub label: String,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

const SERIES: [(&str, &str); 3] = [("p50", "#4e79a7"), ("p95", "#f28e2b"), ("p99", "#e15759")];
const LEFT: f64 = 70.0;
const TOP: f64 = 50.0;
const PLOT_H: f64 = 320.0;
const BOTTOM: f64 = 130.0;
const GROUP_W: f64 = 64.0;
const BAR_W: f64 = 16.0;

/// Escapes text for SVG content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The powers of ten (as exponents) the axis spans so that every value in `values` (ms) fits.
pub fn decades(values: impl IntoIterator<Item = f64>) -> (i32, i32) {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in values.into_iter().filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (-1, 2);
    }
    let lo = lo.log10().floor() as i32;
    let hi = (hi.log10().ceil() as i32).max(lo + 1);
    (lo, hi)
}

/// The y coordinate of `value` ms on a log axis from 10^lo (bottom) to 10^hi (top).
pub fn y_of(value: f64, (lo, hi): (i32, i32)) -> f64 {
    let v = if value > 0.0 {
        value.log10()
    } else {
        lo as f64
    };
    let frac = ((v - lo as f64) / (hi - lo) as f64).clamp(0.0, 1.0);
    TOP + PLOT_H * (1.0 - frac)
}

fn tick_label(exp: i32) -> String {
    if exp >= 0 {
        format!("{}", 10u64.pow(exp as u32))
    } else {
        format!("{}", 10f64.powi(exp))
    }
}

/// The whole chart as SVG text.
pub fn latency_chart(title: &str, rows: &[ChartRow]) -> String {
    let span = decades(rows.iter().flat_map(|r| [r.p50, r.p95, r.p99, r.max]));
    let width = LEFT + 40.0 + GROUP_W * rows.len().max(1) as f64;
    let height = TOP + PLOT_H + BOTTOM;
    let base = TOP + PLOT_H;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    // Legend.
    for (i, (name, color)) in SERIES.iter().enumerate() {
        let x = LEFT + i as f64 * 60.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="29" width="12" height="12" fill="{color}"/><text x="{}" y="39">{name}</text>"#,
            x + 16.0
        );
    }
    let x = LEFT + 3.0 * 60.0;
    let _ = writeln!(
        s,
        r#"<line x1="{x}" y1="35" x2="{}" y2="35" stroke="black" stroke-width="2"/><text x="{}" y="39">max</text>"#,
        x + 12.0,
        x + 16.0
    );
    // Axis with one grid line per decade.
    for exp in span.0..=span.1 {
        let y = y_of(10f64.powi(exp), span);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.0}" y2="{y:.1}" stroke="#ddd"/>"##,
            width - 20.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            tick_label(exp)
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(16 {:.0}) rotate(-90)" text-anchor="middle">latency, ms (log scale)</text>"#,
        TOP + PLOT_H / 2.0
    );
    for (i, row) in rows.iter().enumerate() {
        let gx = LEFT + 12.0 + i as f64 * GROUP_W;
        for (j, (name, color)) in SERIES.iter().enumerate() {
            let v = [row.p50, row.p95, row.p99][j];
            let y = y_of(v, span);
            let _ = writeln!(
                s,
                r#"<rect x="{:.1}" y="{y:.1}" width="{BAR_W}" height="{:.1}" fill="{color}"><title>{} {name}: {v:.2} ms</title></rect>"#,
                gx + j as f64 * BAR_W,
                base - y,
                escape(&row.label)
            );
        }
        let ym = y_of(row.max, span);
        let _ = writeln!(
            s,
            r#"<line x1="{gx:.1}" y1="{ym:.1}" x2="{:.1}" y2="{ym:.1}" stroke="black" stroke-width="2"><title>{} max: {:.2} ms</title></line>"#,
            gx + 3.0 * BAR_W,
            escape(&row.label),
            row.max
        );
        let lx = gx + 1.5 * BAR_W;
        let _ = writeln!(
            s,
            r#"<text transform="translate({lx:.1} {:.0}) rotate(-45)" text-anchor="end">{}</text>"#,
            base + 14.0,
            escape(&row.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"tp@1000/hold <a & "b">"#),
            "tp@1000/hold &lt;a &amp; &quot;b&quot;&gt;"
        );
    }

    #[test]
    fn decades_cover_the_values() {
        assert_eq!(decades([0.35, 12.0, 950.0]), (-1, 3));
        assert_eq!(decades([5.0]), (0, 1));
        assert_eq!(decades([0.0, f64::NAN]), (-1, 2));
    }

    #[test]
    fn log_axis_is_monotone_and_bounded() {
        let span = (-1, 3);
        assert!((y_of(0.1, span) - (TOP + PLOT_H)).abs() < 1e-9);
        assert!((y_of(1000.0, span) - TOP).abs() < 1e-9);
        assert!(y_of(10.0, span) < y_of(1.0, span));
        assert_eq!(y_of(0.0, span), TOP + PLOT_H);
        assert_eq!(y_of(1e9, span), TOP);
    }

    #[test]
    fn chart_has_a_group_per_row() {
        let rows = vec![
            ChartRow {
                label: "crowd/join".into(),
                p50: 3.0,
                p95: 8.0,
                p99: 20.0,
                max: 40.0,
            },
            ChartRow {
                label: "poll/status".into(),
                p50: 0.4,
                p95: 0.9,
                p99: 2.0,
                max: 9.0,
            },
        ];
        let svg = latency_chart("latency", &rows);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // background + 3 legend swatches + 3 bars per row
        assert_eq!(svg.matches("<rect").count(), 1 + 3 + 3 * rows.len());
        assert!(svg.contains("crowd/join") && svg.contains("poll/status"));
    }
}
