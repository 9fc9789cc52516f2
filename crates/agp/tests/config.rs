//! Method configs as experiment TOML tables: defaults, every kind, and named errors.

mod common;

use agp::{
    AgpConfig, Decoding, FeedbackListOrder, FeedbackPromptSource, MethodConfig, MissingPolicy,
    OproConfig, PrpConfig, RankGptConfig, SetwiseConfig, UnparseableRule,
};

fn parse(text: &str) -> Result<MethodConfig, toml::de::Error> {
    toml::from_str(text)
}

#[test]
fn defaults_are_the_papers() {
    let MethodConfig::Agp(c) = parse(r#"kind = "agp""#).unwrap() else {
        panic!("not agp")
    };
    assert_eq!(c, AgpConfig::default());
    assert_eq!(
        (c.epochs, c.batch_size, c.history_length, c.verify_steps),
        (10, 10, 5, 1)
    );
    assert!(c.pbf && c.summarize);
    assert_eq!(c.n_train_users, None);
    assert_eq!(c.feedback_prompt_source, FeedbackPromptSource::PGen);
}

#[test]
fn every_kind_and_quirk_parses() {
    for kind in [
        "base",
        "llm-dir",
        "llm-cot",
        "agp",
        "rerank-opt",
        "llm-dir-pointwise",
        "agp-pointwise",
        "rankgpt",
        "prp-allpair",
        "prp-sort",
        "setwise",
        "first",
        "opro",
        "protegi",
    ] {
        let cfg = parse(&format!("kind = \"{kind}\"\nlabel = \"x\"")).unwrap();
        let (_, cands) = common::fixture();
        assert_eq!(cfg.label(&cands), "x");
        // Round trip: what a run echoes parses back to the same config.
        let echo = toml::to_string(&cfg).unwrap();
        assert_eq!(parse(&echo).unwrap(), cfg, "{kind}");
    }
    let MethodConfig::Agp(c) = parse(
        r#"
kind = "agp"
feedback_prompt_source = "rerank_prompt"
feedback_list_order = "backbone"
reference_feedback_text = true
missing_ids = "complete-with-base"
unparseable = "deepseek"
hist_mask = 0.2
n_train_users = 700
"#,
    )
    .unwrap() else {
        panic!("not agp")
    };
    assert_eq!(c.feedback_prompt_source, FeedbackPromptSource::RerankPrompt);
    assert_eq!(c.feedback_list_order, FeedbackListOrder::Backbone);
    assert_eq!(c.missing_ids, MissingPolicy::CompleteWithBase);
    assert_eq!(c.unparseable, UnparseableRule::Deepseek);
    assert_eq!(c.n_train_users, Some(700));
}

#[test]
fn base_ignores_keys_merged_into_every_method() {
    assert!(parse("kind = \"base\"\nhistory_length = 5").is_ok());
}

#[test]
fn typos_and_unknown_kinds_are_rejected() {
    let e = parse("kind = \"agp\"\nbatchsize = 5")
        .unwrap_err()
        .to_string();
    assert!(e.contains("batchsize"), "{e}");
    let e = parse("kind = \"agp-v2\"").unwrap_err().to_string();
    assert!(e.contains("agp-v2"), "{e}");
}

#[test]
fn validation_names_field_and_range() {
    let (_, cands) = common::fixture();
    let check = |text: &str| {
        parse(text)
            .unwrap()
            .validate(&cands)
            .unwrap_err()
            .to_string()
    };
    let e = check("kind = \"agp\"\nbatch_size = 0");
    assert!(e.contains("`batch_size`") && e.contains("1..=20"), "{e}");
    let e = check("kind = \"agp\"\nn_train_users = 50");
    assert!(
        e.contains("`n_train_users`") && e.contains("1..=20") && e.contains("50"),
        "{e}"
    );
    let e = check("kind = \"llm-dir\"\nhist_mask = 1.5");
    assert!(e.contains("`hist_mask`") && e.contains("0.0..1.0"), "{e}");
    let e = check("kind = \"agp\"\nverify_steps = 0");
    assert!(e.contains("`verify_steps`"), "{e}");
    let e = check("kind = \"agp-pointwise\"\nepochs = 0");
    assert!(e.contains("`epochs`"), "{e}");
}

#[test]
fn default_label_counts_training_users() {
    let (_, cands) = common::fixture();
    assert_eq!(parse("kind = \"agp\"").unwrap().label(&cands), "AGP-T20");
    assert_eq!(
        parse("kind = \"agp\"\nn_train_users = 10")
            .unwrap()
            .label(&cands),
        "AGP-T10"
    );
}

#[test]
fn ranker_defaults_labels_and_ranges() {
    let (_, cands) = common::fixture();
    let cfg = parse("kind = \"rankgpt\"").unwrap();
    assert_eq!(cfg, MethodConfig::RankGpt(RankGptConfig::default()));
    let MethodConfig::RankGpt(c) = &cfg else {
        unreachable!()
    };
    assert_eq!((c.window, c.step, c.history_length), (20, 10, 5));
    assert_eq!(cfg.label(&cands), "RankGPT (w20/s10)");
    // RankGPT's 20 over a list of 10 is one window over the whole list.
    cfg.validate(&cands).unwrap();
    assert_eq!(cfg.calls_per_user(10).exact(), Some(1));
    let cfg = parse("kind = \"rankgpt\"\nwindow = 4\nstep = 2").unwrap();
    assert_eq!(cfg.label(&cands), "RankGPT (w4/s2)");
    assert_eq!(cfg.calls_per_user(10).exact(), Some(4));
    let cfg = parse("kind = \"rankgpt\"\nwindow = 10\nstep = 5").unwrap();
    assert_eq!(cfg.label(&cands), "RankGPT (w10/s5)");
    cfg.validate(&cands).unwrap();
    assert_eq!(
        parse("kind = \"prp-allpair\"").unwrap(),
        MethodConfig::PrpAllpair(PrpConfig::default())
    );
    assert_eq!(
        parse("kind = \"prp-allpair\"").unwrap().label(&cands),
        "PRP-allpair"
    );
    assert_eq!(
        parse("kind = \"setwise\"").unwrap(),
        MethodConfig::Setwise(SetwiseConfig::default())
    );
    assert_eq!(
        parse("kind = \"setwise\"").unwrap().label(&cands),
        "Setwise (c3)"
    );

    let check = |text: &str| {
        parse(text)
            .unwrap()
            .validate(&cands)
            .unwrap_err()
            .to_string()
    };
    let e = check("kind = \"rankgpt\"\nwindow = 101");
    assert!(
        e.contains("`window`") && e.contains("2..=100") && e.contains("101"),
        "{e}"
    );
    let e = check("kind = \"rankgpt\"\nwindow = 1\nstep = 1");
    assert!(e.contains("`window`") && e.contains("2..=100"), "{e}");
    let e = check("kind = \"rankgpt\"\nwindow = 4\nstep = 4");
    assert!(e.contains("`step`") && e.contains("1..=3"), "{e}");
    let e = check("kind = \"rankgpt\"\nwindow = 4\nstep = 0");
    assert!(e.contains("`step`") && e.contains("1..=3"), "{e}");
    let e = check("kind = \"rankgpt\"\nstep = 20");
    assert!(e.contains("`step`") && e.contains("1..=19"), "{e}");
    let e = check("kind = \"setwise\"\nnum_child = 0");
    assert!(e.contains("`num_child`") && e.contains("1..=9"), "{e}");
    let e = check("kind = \"setwise\"\nnum_child = 10");
    assert!(e.contains("`num_child`") && e.contains("1..=9"), "{e}");
    let e = check("kind = \"prp-sort\"\nhistory_length = 0");
    assert!(e.contains("`history_length`"), "{e}");
    let e = check("kind = \"prp-allpair\"\nhist_mask = 1.0");
    assert!(e.contains("`hist_mask`"), "{e}");
    assert_eq!(parse("kind = \"first\"").unwrap().label(&cands), "FIRST");
    // FIRST reads one token per id: ids 0..9 only.
    let mut long = cands.clone();
    long.k = 11;
    let e = parse("kind = \"first\"")
        .unwrap()
        .validate(&long)
        .unwrap_err()
        .to_string();
    assert!(e.contains("FIRST") && e.contains("K = 11"), "{e}");
    let e = parse("kind = \"prp-sort\"\nwindow = 4")
        .unwrap_err()
        .to_string();
    assert!(e.contains("window"), "{e}");
}

#[test]
fn optimizer_defaults_labels_and_ranges() {
    let (_, cands) = common::fixture();
    let cfg = parse("kind = \"opro\"").unwrap();
    assert_eq!(cfg, MethodConfig::Opro(OproConfig::default()));
    let MethodConfig::Opro(c) = &cfg else {
        unreachable!()
    };
    // AGP's loop; OPRO's 8 proposals per step at temperature 1.0, each seeded.
    assert_eq!((c.epochs, c.batch_size, c.history_length), (10, 10, 5));
    assert_eq!((c.n_candidates, c.history_size, c.n_exemplars), (8, 20, 3));
    assert_eq!(c.proposal_decoding, Decoding::temperature(1.0));
    assert!(c.seeded_proposals);
    assert_eq!(c.max_training_calls, None);
    assert_eq!(cfg.label(&cands), "OPRO-T20");
    let cfg = parse("kind = \"protegi\"\nn_train_users = 10\nbatch_size = 5").unwrap();
    let MethodConfig::Protegi(c) = &cfg else {
        unreachable!()
    };
    assert_eq!(
        (
            c.beam_width,
            c.n_gradients,
            c.errors_per_gradient,
            c.n_edits,
            c.n_paraphrases
        ),
        (4, 4, 4, 1, 2)
    );
    for d in [c.gradient_decoding, c.edit_decoding] {
        assert_eq!(d, Decoding::temperature(0.7));
    }
    assert_eq!(c.hit_at, 3);
    assert_eq!(cfg.label(&cands), "ProTeGi-T10");
    cfg.validate(&cands).unwrap();
    assert_eq!(cfg.training_epochs(), 10);
    assert_eq!(parse("kind = \"llm-dir\"").unwrap().training_epochs(), 0);
    let mut capped = cfg.clone();
    *capped.n_train_users_mut().unwrap() = Some(3);
    assert_eq!(capped.label(&cands), "ProTeGi-T3");

    // An unset budget stays out of the echo; a set one round-trips.
    let echo = toml::to_string(&parse("kind = \"agp\"").unwrap()).unwrap();
    assert!(!echo.contains("max_training_calls"), "{echo}");
    let budgeted = parse("kind = \"agp\"\nmax_training_calls = 5000").unwrap();
    assert_eq!(
        parse(&toml::to_string(&budgeted).unwrap()).unwrap(),
        budgeted
    );

    let check = |text: &str| {
        parse(text)
            .unwrap()
            .validate(&cands)
            .unwrap_err()
            .to_string()
    };
    for (text, field, range) in [
        (
            "kind = \"opro\"\nn_candidates = 0",
            "n_candidates",
            "1..=100",
        ),
        (
            "kind = \"opro\"\nhistory_size = 0",
            "history_size",
            "1..=1000",
        ),
        (
            "kind = \"opro\"\nn_exemplars = 101",
            "n_exemplars",
            "0..=100",
        ),
        ("kind = \"opro\"\nbatch_size = 21", "batch_size", "1..=20"),
        (
            "kind = \"opro\"\nmax_training_calls = 0",
            "max_training_calls",
            "1..",
        ),
        (
            "kind = \"agp\"\nmax_training_calls = 0",
            "max_training_calls",
            "1..",
        ),
        (
            "kind = \"protegi\"\nbeam_width = 0",
            "beam_width",
            "1..=100",
        ),
        (
            "kind = \"protegi\"\nn_gradients = 0",
            "n_gradients",
            "1..=100",
        ),
        (
            "kind = \"protegi\"\nerrors_per_gradient = 0",
            "errors_per_gradient",
            "1..=1000",
        ),
        ("kind = \"protegi\"\nn_edits = 0", "n_edits", "1..=100"),
        ("kind = \"protegi\"\nhit_at = 10", "hit_at", "1..=9"),
        ("kind = \"protegi\"\nepochs = 0", "epochs", "1..=1000"),
        (
            "kind = \"protegi\"\nhist_mask = 1.0",
            "hist_mask",
            "0.0..1.0",
        ),
    ] {
        let e = check(text);
        assert!(
            e.contains(&format!("`{field}`")) && e.contains(range),
            "{text}: {e}"
        );
    }
    let e = parse("kind = \"opro\"\nbeam_width = 2")
        .unwrap_err()
        .to_string();
    assert!(e.contains("beam_width"), "{e}");
}
