//! SentEval results in the SBERT paper's Table 5 layout, beside the paper's own rows, and as a
//! grouped bar chart.

pub use sbert_eval::report::TableStyle;
use sbert_eval::report::{grouped_bar_chart_svg, table, Bar};

use crate::{Task, TaskScore};

/// The SBERT paper's Table 5 (Reimers & Gurevych, 2019): test accuracy ×100 per task in
/// [`Task::ALL`] order, and the average.
pub const PAPER_TABLE5: [(&str, [f64; 8]); 8] = [
    (
        "Avg. GloVe embeddings",
        [77.25, 78.30, 91.17, 87.85, 80.18, 83.0, 72.87, 81.52],
    ),
    (
        "Avg. fast-text embeddings",
        [77.96, 79.23, 91.68, 87.81, 82.15, 83.6, 74.49, 82.42],
    ),
    (
        "Avg. BERT embeddings",
        [78.66, 86.25, 94.37, 88.66, 84.40, 92.8, 69.45, 84.94],
    ),
    (
        "BERT CLS-vector",
        [78.68, 84.85, 94.21, 88.23, 84.13, 91.4, 71.13, 84.66],
    ),
    (
        "InferSent - GloVe",
        [81.57, 86.54, 92.50, 90.38, 84.18, 88.2, 75.77, 85.59],
    ),
    (
        "Universal Sentence Encoder",
        [80.09, 85.19, 93.98, 86.70, 86.38, 93.2, 70.14, 85.10],
    ),
    (
        "SBERT-NLI-base",
        [83.64, 89.43, 94.39, 89.86, 88.96, 89.6, 76.00, 87.41],
    ),
    (
        "SBERT-NLI-large",
        [84.88, 90.07, 94.52, 90.33, 90.66, 87.4, 75.94, 87.69],
    ),
];

/// Column headers as the paper prints them.
fn column(task: Task) -> &'static str {
    match task {
        Task::Sst2 => "SST",
        other => other.name(),
    }
}

fn accuracy(scores: &[TaskScore], task: Task) -> Option<f64> {
    scores.iter().find(|s| s.task == task).map(|s| s.accuracy)
}

/// Table 5: the paper's rows, then `model`'s. A task not in `scores` shows `–`; the average is
/// given only when all seven are.
pub fn table5(model: &str, scores: &[TaskScore], style: TableStyle) -> String {
    let mut header = vec!["Model".to_string()];
    header.extend(Task::ALL.iter().map(|&t| column(t).to_string()));
    header.push("Avg.".to_string());
    let mut rows: Vec<Vec<String>> = PAPER_TABLE5
        .iter()
        .map(|(name, values)| {
            let mut row = vec![format!("{name} (paper)")];
            row.extend(values.iter().map(|v| format!("{v:.2}")));
            row
        })
        .collect();
    let ours: Vec<Option<f64>> = Task::ALL.iter().map(|&t| accuracy(scores, t)).collect();
    let mut row = vec![model.to_string()];
    row.extend(
        ours.iter()
            .map(|v| v.map_or("–".to_string(), |v| format!("{v:.2}"))),
    );
    let all: Option<Vec<f64>> = ours.into_iter().collect();
    row.push(all.map_or("–".to_string(), |v| {
        format!("{:.2}", v.iter().sum::<f64>() / v.len() as f64)
    }));
    rows.push(row);
    table(&header, &rows, style)
}

/// A per-task table of everything measured: accuracy, the accuracy that chose the penalty,
/// F1 (MRPC), sizes and classifier time.
pub fn details_table(scores: &[TaskScore], style: TableStyle) -> String {
    let header: Vec<String> = [
        "Task", "Accuracy", "Dev acc.", "F1", "Train", "Test", "Seconds",
    ]
    .map(String::from)
    .to_vec();
    let rows: Vec<Vec<String>> = scores
        .iter()
        .map(|s| {
            vec![
                s.task.name().to_string(),
                format!("{:.2}", s.accuracy),
                format!("{:.2}", s.dev_accuracy),
                s.f1.map_or(String::new(), |f| format!("{f:.2}")),
                s.n_train.to_string(),
                s.n_test.to_string(),
                format!("{:.1}", s.seconds),
            ]
        })
        .collect();
    table(&header, &rows, style)
}

/// Rows of the paper drawn beside the model in [`chart_svg`].
const CHART_ROWS: [&str; 4] = [
    "Avg. GloVe embeddings",
    "InferSent - GloVe",
    "Universal Sentence Encoder",
    "SBERT-NLI-base",
];

/// A grouped bar chart (SVG): a group per task, bars for a few of the paper's rows and for
/// `model`.
pub fn chart_svg(model: &str, scores: &[TaskScore]) -> String {
    let mut bars = Vec::new();
    for (ti, &task) in Task::ALL.iter().enumerate() {
        for (name, values) in PAPER_TABLE5.iter().filter(|(n, _)| CHART_ROWS.contains(n)) {
            bars.push(Bar {
                group: column(task),
                series: name,
                value: values[ti],
            });
        }
        if let Some(v) = accuracy(scores, task) {
            bars.push(Bar {
                group: column(task),
                series: model,
                value: v,
            });
        }
    }
    grouped_bar_chart_svg(
        "SentEval test accuracy × 100 (SBERT paper's Table 5)",
        "accuracy × 100",
        (50.0, 100.0),
        &bars,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(task: Task, accuracy: f64) -> TaskScore {
        TaskScore {
            task,
            accuracy,
            dev_accuracy: accuracy,
            f1: None,
            n_train: 1,
            n_test: 1,
            seconds: 0.0,
        }
    }

    #[test]
    fn paper_averages_are_the_row_means() {
        for (name, v) in PAPER_TABLE5 {
            let mean = v[..7].iter().sum::<f64>() / 7.0;
            assert!((mean - v[7]).abs() < 0.006, "{name}: {mean} vs {}", v[7]);
        }
    }

    #[test]
    fn model_row_follows_the_paper_rows() {
        let all: Vec<TaskScore> = Task::ALL.iter().map(|&t| score(t, 80.0)).collect();
        let md = table5("mine", &all, TableStyle::Markdown);
        let last = md.lines().last().expect("rows");
        assert!(
            last.starts_with("| mine") && last.contains("80.00"),
            "{last}"
        );
        assert_eq!(md.lines().count(), 2 + PAPER_TABLE5.len() + 1);
        let partial = table5("mine", &all[..2], TableStyle::Plain);
        assert!(
            partial.lines().last().expect("rows").ends_with('–'),
            "{partial}"
        );
        let svg = chart_svg("mine", &all);
        assert_eq!(svg.matches("<rect x=").count(), 7 * 5 + 5);
    }
}
