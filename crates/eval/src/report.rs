//! Rendering scores: plain and Markdown tables in the SBERT paper's layouts, and SVG charts
//! (STS scores by pooling; training curves).

use std::fmt::Write as _;

use crate::evaluate::StsScores;

/// Table flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableStyle {
    /// Aligned columns for a terminal.
    Plain,
    /// GitHub Markdown.
    Markdown,
}

/// A table of `header` and `rows`: the first column left-aligned, the others right-aligned.
pub fn table(header: &[String], rows: &[Vec<String>], style: TableStyle) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, &w))| {
                // First column left-aligned, numbers right-aligned.
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        match style {
            TableStyle::Plain => padded.join("  ").trim_end().to_string(),
            TableStyle::Markdown => format!("| {} |", padded.join(" | ")),
        }
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", line(header));
    match style {
        TableStyle::Plain => {
            let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            let _ = writeln!(out, "{}", "-".repeat(total));
        }
        TableStyle::Markdown => {
            let seps: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(i, &w)| {
                    if i == 0 {
                        "-".repeat(w.max(3))
                    } else {
                        format!("{}:", "-".repeat(w.max(3) - 1))
                    }
                })
                .collect();
            let _ = writeln!(out, "| {} |", seps.join(" | "));
        }
    }
    for row in rows {
        let _ = writeln!(out, "{}", line(row));
    }
    out
}

fn upper(pooling: &str) -> String {
    pooling.to_uppercase()
}

/// One row per (dataset, pooling): pairs, Spearman and Pearson of cosine, then Spearman of dot,
/// Euclidean and Manhattan (all ×100).
pub fn scores_table(scores: &[StsScores], style: TableStyle) -> String {
    let header: Vec<String> = [
        "dataset",
        "pooling",
        "pairs",
        "spearman",
        "pearson",
        "dot ρ",
        "euclid ρ",
        "manhattan ρ",
    ]
    .map(String::from)
    .to_vec();
    let rows: Vec<Vec<String>> = scores
        .iter()
        .map(|s| {
            let mut row = vec![
                s.dataset.clone(),
                upper(&s.pooling),
                s.pairs.to_string(),
                format!("{:.2}", s.spearman),
                format!("{:.2}", s.pearson),
            ];
            row.extend(
                s.similarities
                    .iter()
                    .skip(1)
                    .map(|c| format!("{:.2}", c.spearman)),
            );
            row
        })
        .collect();
    table(&header, &rows, style)
}

/// Distinct values in first-seen order.
fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// The paper's Table 1 layout: a row per model × pooling, a column per dataset (Spearman ×100
/// of cosine), and their average.
pub fn suite_table(model: &str, scores: &[StsScores], style: TableStyle) -> String {
    let datasets = distinct(scores.iter().map(|s| s.dataset.as_str()));
    let poolings = distinct(scores.iter().map(|s| s.pooling.as_str()));
    let mut header = vec!["model".to_string()];
    header.extend(datasets.iter().map(|d| d.to_string()));
    header.push("Avg.".into());
    let rows: Vec<Vec<String>> = poolings
        .iter()
        .map(|p| {
            let mut row = vec![format!("{model} ({})", upper(p))];
            let mut values = Vec::new();
            for d in &datasets {
                match scores.iter().find(|s| s.dataset == *d && s.pooling == *p) {
                    Some(s) => {
                        values.push(s.spearman);
                        row.push(format!("{:.2}", s.spearman));
                    }
                    None => row.push("–".into()),
                }
            }
            let avg = values.iter().sum::<f64>() / values.len().max(1) as f64;
            row.push(format!("{avg:.2}"));
            row
        })
        .collect();
    table(&header, &rows, style)
}

/// The paper's Table 6 layout: a row per pooling, a column per dataset (Spearman ×100).
pub fn pooling_table(scores: &[StsScores], style: TableStyle) -> String {
    let datasets = distinct(scores.iter().map(|s| s.dataset.as_str()));
    let poolings = distinct(scores.iter().map(|s| s.pooling.as_str()));
    let mut header = vec!["pooling".to_string()];
    header.extend(datasets.iter().map(|d| d.to_string()));
    let rows: Vec<Vec<String>> = poolings
        .iter()
        .map(|p| {
            let mut row = vec![upper(p)];
            for d in &datasets {
                row.push(
                    scores
                        .iter()
                        .find(|s| s.dataset == *d && s.pooling == *p)
                        .map_or("–".into(), |s| format!("{:.2}", s.spearman)),
                );
            }
            row
        })
        .collect();
    table(&header, &rows, style)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG document's opening: white background and a centred title.
fn svg_start(width: f64, height: f64, title: &str) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" font-size="16" text-anchor="middle">{}</text>"#,
        width / 2.0,
        xml_escape(title)
    );
    svg
}

/// A grouped bar chart (SVG): a group per dataset, a bar per pooling, height = Spearman ×100.
pub fn bar_chart_svg(title: &str, scores: &[StsScores]) -> String {
    let upper: Vec<String> = scores.iter().map(|s| upper(&s.pooling)).collect();
    let bars: Vec<Bar<'_>> = scores
        .iter()
        .zip(&upper)
        .map(|(s, p)| Bar {
            group: &s.dataset,
            series: p,
            value: s.spearman,
        })
        .collect();
    grouped_bar_chart_svg(title, "Spearman ρ × 100", (0.0, 100.0), &bars)
}

/// One bar of a [`grouped_bar_chart_svg`].
#[derive(Debug, Clone, Copy)]
pub struct Bar<'a> {
    /// The group (x axis label) it stands in.
    pub group: &'a str,
    /// The series (legend entry and color) it belongs to.
    pub series: &'a str,
    /// Its height.
    pub value: f64,
}

/// A grouped bar chart (SVG): groups in order of first appearance along the x axis, a bar
/// per series within each group, heights on a `y_range` axis with its value written on top.
pub fn grouped_bar_chart_svg(
    title: &str,
    y_label: &str,
    y_range: (f64, f64),
    bars: &[Bar<'_>],
) -> String {
    const COLORS: [&str; 8] = [
        "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f",
    ];
    let groups = distinct(bars.iter().map(|b| b.group));
    let series = distinct(bars.iter().map(|b| b.series));
    let (lo, hi) = y_range;
    let span = (hi - lo).max(f64::EPSILON);
    let bar = if series.len() > 4 { 18.0 } else { 28.0 };
    let (gap, left, top, plot_h) = (36.0, 60.0, 50.0, 300.0);
    let legend_w = 40.0 + 7.0 * series.iter().map(|s| s.chars().count()).max().unwrap_or(0) as f64;
    let group_w = bar * series.len() as f64;
    let right = left + groups.len() as f64 * (group_w + gap);
    let width = right + legend_w;
    let height = top + plot_h + 60.0;
    let y = |v: f64| top + plot_h * (1.0 - ((v - lo) / span).clamp(0.0, 1.0));
    let mut svg = svg_start(width, height, title);
    for tick in ticks(lo, hi) {
        let ty = y(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" x2="{right}" y1="{ty}" y2="{ty}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            left - 6.0,
            ty + 4.0,
            format_tick(tick)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">{}</text>"#,
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        xml_escape(y_label)
    );
    for (gi, g) in groups.iter().enumerate() {
        let gx = left + gap / 2.0 + gi as f64 * (group_w + gap);
        for (si, s) in series.iter().enumerate() {
            if let Some(b) = bars.iter().find(|b| b.group == *g && b.series == *s) {
                let x = gx + si as f64 * bar;
                let top_y = y(b.value);
                let _ = writeln!(
                    svg,
                    r#"<rect x="{x}" y="{top_y}" width="{}" height="{}" fill="{}"><title>{} {}: {:.2}</title></rect>"#,
                    bar - 2.0,
                    top + plot_h - top_y,
                    COLORS[si % COLORS.len()],
                    xml_escape(g),
                    xml_escape(s),
                    b.value
                );
                let _ = writeln!(
                    svg,
                    r#"<text x="{}" y="{}" font-size="9" text-anchor="middle">{:.1}</text>"#,
                    x + bar / 2.0 - 1.0,
                    top_y - 3.0,
                    b.value
                );
            }
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            gx + group_w / 2.0,
            top + plot_h + 18.0,
            xml_escape(g)
        );
    }
    for (si, s) in series.iter().enumerate() {
        let ly = top + 10.0 + si as f64 * 20.0;
        let lx = right + 20.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            ly - 10.0,
            COLORS[si % COLORS.len()],
            lx + 18.0,
            ly,
            xml_escape(s)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// One line of a [`line_chart_svg`] panel.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// Legend text.
    pub name: &'a str,
    /// `(x, y)` points in x order.
    pub points: &'a [(f64, f64)],
    /// A CSS color.
    pub color: &'a str,
    /// Draw a dot at every point (for sparse series such as dev evaluations).
    pub dots: bool,
}

/// One plot of a [`line_chart_svg`], with its own y axis.
#[derive(Debug, Clone)]
pub struct Panel<'a> {
    /// The y axis label.
    pub y_label: &'a str,
    /// The lines.
    pub series: Vec<Series<'a>>,
}

/// Five round tick values spanning `[lo, hi]`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    (0..)
        .map(|k| first + k as f64 * step)
        .take_while(|t| *t <= hi + step * 1e-9)
        .collect()
}

/// Panels stacked over a shared x axis (SVG): a training run's loss over the steps above its
/// dev scores, for example. Panels without points are left out.
pub fn line_chart_svg(title: &str, x_label: &str, panels: &[Panel<'_>]) -> String {
    let panels: Vec<&Panel<'_>> = panels
        .iter()
        .filter(|p| p.series.iter().any(|s| !s.points.is_empty()))
        .collect();
    let (left, right, top, plot_h, gap, plot_w) = (70.0, 30.0, 46.0, 220.0, 60.0, 640.0);
    let width = left + plot_w + right;
    let height = top + panels.len() as f64 * (plot_h + gap) + 10.0;
    let all = || {
        panels
            .iter()
            .flat_map(|p| p.series.iter().flat_map(|s| s.points.iter()))
    };
    let x_max = all().map(|p| p.0).fold(1.0, f64::max);
    let x = |v: f64| left + plot_w * v / x_max;
    let mut svg = svg_start(width, height, title);
    for (pi, panel) in panels.iter().enumerate() {
        let y0 = top + pi as f64 * (plot_h + gap);
        let ys = || {
            panel
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
        };
        let (lo, hi) = (
            ys().fold(f64::INFINITY, f64::min),
            ys().fold(f64::NEG_INFINITY, f64::max),
        );
        let pad = ((hi - lo) * 0.05).max(1e-6);
        let (lo, hi) = (lo - pad, hi + pad);
        let y = |v: f64| y0 + plot_h * (1.0 - (v - lo) / (hi - lo));
        for t in ticks(lo, hi) {
            let ty = y(t);
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" x2="{}" y1="{ty:.1}" y2="{ty:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                left + plot_w,
                left - 6.0,
                ty + 4.0,
                format_tick(t)
            );
        }
        for t in ticks(0.0, x_max) {
            let tx = x(t);
            let _ = writeln!(
                svg,
                r#"<text x="{tx:.1}" y="{}" text-anchor="middle">{}</text>"#,
                y0 + plot_h + 16.0,
                format_tick(t)
            );
        }
        let _ = writeln!(
            svg,
            r#"<rect x="{left}" y="{y0}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
        );
        let mid = y0 + plot_h / 2.0;
        let _ = writeln!(
            svg,
            r#"<text x="16" y="{mid}" transform="rotate(-90 16 {mid})" text-anchor="middle">{}</text>"#,
            xml_escape(panel.y_label)
        );
        for (si, s) in panel.series.iter().enumerate() {
            let path: Vec<String> = s
                .points
                .iter()
                .map(|&(px, py)| format!("{:.1},{:.1}", x(px), y(py)))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
                path.join(" "),
                s.color
            );
            if s.dots {
                for &(px, py) in s.points {
                    let _ = writeln!(
                        svg,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"><title>{}: {py:.4}</title></circle>"#,
                        x(px),
                        y(py),
                        s.color,
                        format_tick(px)
                    );
                }
            }
            let (lx, ly) = (left + plot_w - 200.0, y0 + 16.0 + si as f64 * 16.0);
            let _ = writeln!(
                svg,
                r#"<rect x="{lx}" y="{}" width="12" height="3" fill="{}"/><text x="{}" y="{ly}">{}</text>"#,
                ly - 5.0,
                s.color,
                lx + 18.0,
                xml_escape(s.name)
            );
        }
    }
    if !panels.is_empty() {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            left + plot_w / 2.0,
            height - 14.0,
            xml_escape(x_label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A tick label: integers plainly, small values with enough decimals.
fn format_tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round())
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::Correlations;
    use sbert::Similarity;

    fn score(dataset: &str, pooling: &str, spearman: f64) -> StsScores {
        StsScores {
            dataset: dataset.into(),
            pooling: pooling.into(),
            pairs: 10,
            spearman,
            pearson: spearman - 1.0,
            similarities: Similarity::ALL
                .iter()
                .map(|&similarity| Correlations {
                    similarity,
                    spearman,
                    pearson: spearman,
                })
                .collect(),
        }
    }

    #[test]
    fn suite_table_has_a_row_per_pooling_and_the_average() {
        let s = vec![
            score("STS12", "mean", 70.0),
            score("STS13", "mean", 80.0),
            score("STS12", "cls", 60.0),
        ];
        let t = suite_table("m", &s, TableStyle::Markdown);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].contains("STS12") && lines[0].contains("Avg."));
        assert!(
            lines[2].contains("m (MEAN)") && lines[2].contains("75.00"),
            "{t}"
        );
        assert!(lines[3].contains("–") && lines[3].contains("60.00"), "{t}");
    }

    #[test]
    fn chart_is_well_formed_svg_with_a_bar_per_score() {
        let s = vec![
            score("A", "mean", 70.0),
            score("A", "max", 60.0),
            score("B<&>", "mean", 50.0),
        ];
        let svg = bar_chart_svg("t", &s);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>").count(), 3);
        assert!(svg.contains("B&lt;&amp;&gt;"));
    }

    #[test]
    fn ticks_are_round_and_span_the_range() {
        assert_eq!(ticks(0.0, 360.0), vec![0.0, 100.0, 200.0, 300.0]);
        let t = ticks(0.013, 0.061);
        assert_eq!(t.len(), 3);
        assert!((t[0] - 0.02).abs() < 1e-12 && (t[2] - 0.06).abs() < 1e-12);
    }

    #[test]
    fn line_chart_has_a_polyline_per_series_and_skips_empty_panels() {
        let loss = [(1.0, 0.05), (2.0, 0.04), (3.0, 0.03)];
        let dev = [(3.0, 88.5)];
        let panels = [
            Panel {
                y_label: "loss",
                series: vec![Series {
                    name: "loss",
                    points: &loss,
                    color: "gray",
                    dots: false,
                }],
            },
            Panel {
                y_label: "dev",
                series: vec![Series {
                    name: "dev <ρ>",
                    points: &dev,
                    color: "orange",
                    dots: true,
                }],
            },
            Panel {
                y_label: "nothing",
                series: vec![],
            },
        ];
        let svg = line_chart_svg("run", "step", &panels);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(svg.contains("dev &lt;ρ&gt;") && !svg.contains("nothing"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
