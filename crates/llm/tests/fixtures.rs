//! The committed recordings are what they claim to be: whole lines, one answer each of the kind
//! the line says, every line naming the one model file that produced it. A recording cut off by
//! an interrupted sitting must not be committed as it is.

use agp_llm::CallKind;
use agp_llm::store::Record;
use std::collections::HashSet;
use std::path::Path;

#[test]
fn committed_recordings_are_whole_and_name_their_model() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/llm");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        files += 1;
        let name = path.display();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n'), "{name}: torn last line");
        let mut keys = HashSet::new();
        let mut model = None;
        for (i, line) in text.lines().enumerate() {
            let at = format!("{name}:{}", i + 1);
            let rec: Record = serde_json::from_str(line).unwrap_or_else(|e| panic!("{at}: {e}"));
            assert!(keys.insert(rec.key.clone()), "{at}: key recorded twice");
            assert_eq!(rec.key.len(), 64, "{at}: key is not a sha256");
            let sha = rec.model.file_sha256.as_deref().unwrap_or_default();
            assert!(
                sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
                "{at}: a local recording names its GGUF by sha256"
            );
            assert_eq!(rec.model.backend, "local", "{at}");
            let this = (rec.model.model.clone(), sha.to_string());
            assert_eq!(
                model.get_or_insert(this.clone()),
                &this,
                "{at}: second model"
            );
            let answers = [
                rec.chat.is_some(),
                rec.score.is_some(),
                rec.labels.is_some(),
                rec.failure.is_some(),
            ];
            assert_eq!(
                answers.iter().filter(|&&a| a).count(),
                1,
                "{at}: one answer"
            );
            let kind_matches = match rec.kind {
                CallKind::Chat => rec.chat.is_some(),
                CallKind::Score => rec.score.is_some(),
                CallKind::Labels => rec.labels.is_some(),
            };
            assert!(
                kind_matches || rec.failure.is_some(),
                "{at}: answer of another kind"
            );
            assert!(rec.settings.is_object(), "{at}: runtime settings recorded");
        }
        assert!(!keys.is_empty(), "{name}: empty");
    }
    assert!(files >= 2, "the bundled recordings and the 1.5B model's");
}
