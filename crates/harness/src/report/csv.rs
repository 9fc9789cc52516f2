//! cells.csv and per_user.csv.

use super::*;
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.into()
    }
}

pub(super) fn cells_csv(cells: &[Cell]) -> String {
    let mut out = String::from(
        "seed,dataset,backbone,llm,method,kind,selection,epoch,n_users,ndcg10,ci_low,ci_high,mean_rank,hr1,hr3,hr5,delta_base,delta_ci_low,delta_ci_high,p_value\n",
    );
    for c in cells {
        let base = cells
            .iter()
            .find(|b| b.is_base() && group_key(b) == group_key(c));
        for s in Selection::ALL {
            let sum = summarize(c, s);
            let p = if c.is_base() {
                None
            } else {
                versus_base(c, base, s)
            };
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                c.seed,
                csv_field(&c.dataset),
                csv_field(&c.backbone),
                csv_field(&c.llm),
                csv_field(&c.label),
                csv_field(&c.kind),
                s.name(),
                c.selected(s).epoch,
                sum.n,
                f4(sum.ndcg),
                f4(sum.ci.0),
                f4(sum.ci.1),
                f4(sum.rank),
                f4(sum.hr1),
                f4(sum.hr3),
                f4(sum.hr5),
                p.map(|p| f4(p.mean_diff)).unwrap_or_default(),
                p.map(|p| f4(p.ci.0)).unwrap_or_default(),
                p.map(|p| f4(p.ci.1)).unwrap_or_default(),
                p.map(|p| f4(p.p_value)).unwrap_or_default(),
            );
        }
    }
    out
}

pub(super) fn per_user_csv(cells: &[Cell]) -> String {
    let mut out =
        String::from("seed,dataset,backbone,llm,method,selection,epoch,user,rank,ndcg10\n");
    for c in cells {
        for s in Selection::ALL {
            let e = c.selected(s);
            for u in &e.users {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{:.6}",
                    c.seed,
                    csv_field(&c.dataset),
                    csv_field(&c.backbone),
                    csv_field(&c.llm),
                    csv_field(&c.label),
                    s.name(),
                    e.epoch,
                    u.user,
                    u.rank,
                    u.ndcg
                );
            }
        }
    }
    out
}
