//! The reproducibility card at the end of every report: what a reader needs to rerun the
//! table or to tell whether another run is comparable, generated from the run itself (models
//! by file hash, the sampling every request carried, when the answers were recorded, seeds,
//! prompt-template hashes, and how often each row's answers were unusable).

use super::*;

/// `YYYY-MM-DD` of a Unix time in UTC (Hinnant's civil-from-days).
fn day(unix: u64) -> String {
    let z = (unix / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn fmt_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "unset".into(), |v| v.to_string())
}

fn pct(part: u64, whole: usize) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{:.0}%", 100.0 * part as f64 / whole as f64)
    }
}

pub(super) fn card(exp: &Experiment, facts: &RunFacts, cells: &[Cell]) -> String {
    let mut md = String::from(
        "\n## Reproducibility card\n\nGenerated from this run, not written by hand.\n\n",
    );
    for (spec, served) in &facts.recordings {
        let _ = writeln!(
            md,
            "- **LLM `{spec}`**: answered from a recordings file of {} answers.",
            served.records
        );
        for m in &served.models {
            let _ = writeln!(
                md,
                "  - Model: {} `{}`, {}.",
                m.backend,
                m.model,
                match &m.file_sha256 {
                    Some(sha) => format!("GGUF sha256 `{sha}`"),
                    None => "no model file (an API model, named as the provider named it)".into(),
                }
            );
        }
        if let (Some(a), Some(b)) = (served.first_recorded, served.last_recorded) {
            let (a, b) = (day(a), day(b));
            if a == b {
                let _ = writeln!(md, "  - Its answers were recorded on {a} (UTC).");
            } else {
                let _ = writeln!(
                    md,
                    "  - Its answers were recorded between {a} and {b} (UTC)."
                );
            }
        }
        if !served.served.is_empty() {
            let names: Vec<&str> = served.served.iter().map(String::as_str).collect();
            let _ = writeln!(
                md,
                "  - The server said these served its answers: {}.",
                names.join("; ")
            );
        }
        for r in &served.runtimes {
            let _ = writeln!(md, "  - Made with the runtime settings `{r}`.");
        }
        for s in &served.samplings {
            let (kind, sampling) = s.split_once(": ").unwrap_or(("", s));
            let _ = writeln!(
                md,
                "  - Sampling its `{kind}` requests carried: `{sampling}` (`null`: not sent, the \
                 provider's default, which the local runtime reads as greedy)."
            );
        }
    }
    let _ = writeln!(
        md,
        "- Seeds: {:?} (backbone training, user draw and history masking); answers are scored \
         under `unusable_answers = \"{}\"`.",
        facts.seeds,
        exp.scoring.name()
    );
    let sampling = exp.settings.sampling();
    let _ = writeln!(
        md,
        "- Decoding sent with every chat call whose method sets none for its stage: \
         temperature {}, top_p {}, seed {}, max_tokens {} (the reference code sends none, so \
         the provider's default decided there: temperature 1 on OpenAI). Log-probability calls \
         read one step at temperature 0. Recorded answers whose requests left a field unset \
         (`null` above) were made in process, where that is the same greedy decoding.",
        fmt_opt(sampling.temperature),
        fmt_opt(sampling.top_p),
        fmt_opt(sampling.seed),
        fmt_opt(sampling.max_tokens),
    );
    let hashes: Vec<String> = agp::prompts::templates()
        .into_iter()
        .map(|(name, text)| format!("{name} `{}`", &crate::pipeline::sha256_hex(&[&text])[..12]))
        .collect();
    let _ = writeln!(
        md,
        "- Prompt templates (sha256 of each rendered with placeholders, first 12 hex digits): {}.",
        hashes.join(", ")
    );
    let _ = writeln!(
        md,
        "\nUnusable answers per row, over the test users of the reported epoch:\n\n\
         | Cell | users | unparseable | partial | failed calls |\n|---|---|---|---|---|"
    );
    for c in cells.iter().filter(|c| !c.llm.is_empty()) {
        let users = &c.selected(Selection::BestValid).users;
        let count = |o: agp::ParseOutcome| users.iter().filter(|u| u.parse == o).count() as u64;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            c.key(),
            users.len(),
            pct(count(agp::ParseOutcome::Unparseable), users.len()),
            pct(count(agp::ParseOutcome::Partial), users.len()),
            pct(count(agp::ParseOutcome::CallFailed), users.len()),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut decoding = Vec::new();
    let mut departures = Vec::new();
    for c in cells {
        let Some(cfg) = c.builtin() else { continue };
        if !seen.insert(c.label.clone()) {
            continue;
        }
        let stages: Vec<String> = cfg
            .decoding()
            .iter()
            .map(|(stage, d)| format!("{} at {}", stage.as_str(), d.describe()))
            .collect();
        if !stages.is_empty() {
            decoding.push(format!("{}: {}", c.label, stages.join(", ")));
        }
        let d = cfg.departures();
        if !d.is_empty() {
            departures.push(format!("{}: {}", c.label, d.join("; ")));
        }
    }
    if !decoding.is_empty() {
        let _ = writeln!(
            md,
            "\nDecoding a method sets for its own stages (every other call is sent with the \
             run's sampling above):\n"
        );
        for d in &decoding {
            let _ = writeln!(md, "- {d}.");
        }
    }
    let _ = writeln!(
        md,
        "\nDepartures from each method's published settings (the paper's for AGP and its \
         variants, LLM-Dir and LLM-CoT; the released code's for the other baselines), read from \
         the rows' configs:\n"
    );
    if departures.is_empty() {
        let _ = writeln!(md, "- None: every row runs at its published settings.");
    }
    for d in &departures {
        let _ = writeln!(md, "- {d}.");
    }
    md
}

#[cfg(test)]
mod tests {
    use super::day;

    #[test]
    fn days_in_utc() {
        assert_eq!(day(0), "1970-01-01");
        assert_eq!(day(951_782_400), "2000-02-29");
        assert_eq!(day(1_796_515_200), "2026-12-06");
    }
}
