//! Several sequences decoded together in one llama.cpp context (continuous batching, as
//! llama-server's slots are), with each slot's last prompt kept as a prefix cache.
//!
//! Each step builds one batch: the next token of every slot that is generating, then prompt
//! tokens of slots still reading theirs, up to `n_batch`. A call is admitted into a free slot
//! as soon as it arrives, into the slot whose cached tokens share the longest prefix with its
//! prompt (the least recently used among equals), so only the new tokens are read.
//!
//! Memory: one KV stream of `n_ctx` tokens per slot, `slots × n_ctx` in all; a slot keeps its
//! last call's tokens until another call takes it, which is the whole prefix cache.
//!
//! What this costs in reproducibility is [`CAVEAT`]; measured in `tests/local.rs`.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::{ChatStart, Job, Prompter, Reply, ScoreStart, log_softmax_at, usage};
use crate::{ChatResponse, LabelResponse, LlmError, ScoreResponse};

/// Said in the settings of a model with more than one slot, which every answer it records
/// carries.
pub const CAVEAT: &str = "continuous batching with a prefix cache per slot: llama.cpp's \
                          kernels round differently with the batch's shape, so an answer can \
                          depend on which calls shared its batch and what its slot had cached \
                          (measured: 17 of 38 list answers and most yes/no scores moved); use \
                          one slot (`--jobs 1`; `--record` does) where answers must depend on \
                          the request alone";

/// What a slot is doing for its call.
enum Work {
    Chat {
        reply: Reply<ChatResponse>,
        sampler: LlamaSampler,
        max_new: usize,
        bytes: Vec<u8>,
        generated: usize,
        /// The token sampled last, fed in the next step.
        next: Option<LlamaToken>,
    },
    Score {
        reply: Reply<ScoreResponse>,
        prompts: Vec<Vec<LlamaToken>>,
        shared: usize,
        scores: Vec<f32>,
    },
    Labels {
        reply: Reply<LabelResponse>,
        labels: Vec<LlamaToken>,
        logprobs: Vec<f32>,
    },
}

impl Work {
    fn fail(self, e: LlmError) {
        // The caller may have gone; nobody is left to tell then.
        match self {
            Work::Chat { reply, .. } => drop(reply.send(Err(e))),
            Work::Score { reply, .. } => drop(reply.send(Err(e))),
            Work::Labels { reply, .. } => drop(reply.send(Err(e))),
        }
    }
}

struct Task {
    work: Work,
    /// Tokens to read, at the slot's next positions.
    pending: Vec<LlamaToken>,
    fed: usize,
    /// Logits are taken after the last pending token. Not for a scoring's shared prefix,
    /// which is read in steps of its own as the one-sequence worker reads it, so that a
    /// scoring alone in a fresh slot gives that worker's scores bit for bit.
    logits: bool,
    t0: Instant,
    /// Prompt tokens read (the shared prefix of a scoring once) and, of them, those found in
    /// the slot's cache.
    prompt_tokens: usize,
    cached_tokens: usize,
}

impl Task {
    /// Makes a scoring's candidate `k` (its prompt after the shared prefix) the tokens to
    /// read next, with its logits after the last.
    fn read_candidate(&mut self, k: usize) {
        if let Work::Score {
            prompts, shared, ..
        } = &self.work
        {
            self.pending = prompts[k][*shared..].to_vec();
            self.fed = 0;
            self.logits = true;
        }
    }
}

struct Slot {
    seq: i32,
    /// The tokens whose keys and values the slot's sequence holds, at positions 0.. .
    tokens: Vec<LlamaToken>,
    last_used: u64,
    task: Option<Task>,
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

struct Server<'p, 'm> {
    p: &'p Prompter<'m>,
    ctx: LlamaContext<'m>,
    slots: Vec<Slot>,
    clock: u64,
}

/// Serves `rx` until every sender is gone and every call is answered.
pub(super) fn serve<'m>(p: &Prompter<'m>, ctx: LlamaContext<'m>, rx: &mpsc::Receiver<Job>) {
    let n = p.cfg.slots;
    let mut s = Server {
        p,
        ctx,
        slots: (0..n)
            .map(|i| Slot {
                seq: i as i32,
                tokens: Vec::new(),
                last_used: 0,
                task: None,
            })
            .collect(),
        clock: 0,
    };
    let mut batch = LlamaBatch::new(p.cfg.n_batch as usize, n as i32);
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut open = true;
    loop {
        let busy = s.slots.iter().any(|s| s.task.is_some());
        if !busy && waiting.is_empty() {
            if !open {
                return;
            }
            match rx.recv() {
                Ok(j) => waiting.push_back(j),
                Err(_) => return,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(j) => waiting.push_back(j),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        while s.slots.iter().any(|s| s.task.is_none()) {
            let Some(job) = waiting.pop_front() else {
                break;
            };
            s.admit(job);
        }
        // A Rust panic inside one step must not take the model down for every later call:
        // the calls in that step get an error and their slots start empty.
        let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.step(&mut batch)));
        if stepped.is_err() {
            s.fail_busy(|| LlmError::Other("panic in the local model's batch step".to_string()));
        }
    }
}

impl Server<'_, '_> {
    /// Starts `job` in the free slot that has the most of its prompt cached.
    fn admit(&mut self, job: Job) {
        let t0 = Instant::now();
        let p = self.p;
        let (prompt, work) = match job {
            Job::Chat(req, reply) => match p.chat_start(&req) {
                Ok(ChatStart {
                    prompt,
                    max_new,
                    sampler,
                }) => (
                    prompt,
                    Work::Chat {
                        reply,
                        sampler,
                        max_new,
                        bytes: Vec::new(),
                        generated: 0,
                        next: None,
                    },
                ),
                Err(e) => return drop(reply.send(Err(e))),
            },
            Job::Score(req, reply) => {
                if req.suffixes.is_empty() {
                    let _ = reply.send(Ok(ScoreResponse {
                        scores: vec![],
                        usage: Default::default(),
                    }));
                    return;
                }
                match p.score_start(&req) {
                    Ok(ScoreStart { prompts, shared }) => (
                        prompts[0].clone(),
                        Work::Score {
                            reply,
                            prompts,
                            shared,
                            scores: Vec::new(),
                        },
                    ),
                    Err(e) => return drop(reply.send(Err(e))),
                }
            }
            Job::Labels(req, reply) => match p.labels_start(&req) {
                Ok((prompt, labels)) => (
                    prompt,
                    Work::Labels {
                        reply,
                        labels,
                        logprobs: Vec::new(),
                    },
                ),
                Err(e) => return drop(reply.send(Err(e))),
            },
        };
        // At least one token is read, so the call has logits of its own.
        let usable = |s: &Slot| {
            if p.cfg.reuse_prefix {
                common_prefix(&s.tokens, &prompt).min(prompt.len() - 1)
            } else {
                0
            }
        };
        let Some(i) = (0..self.slots.len())
            .filter(|&i| self.slots[i].task.is_none())
            .max_by_key(|&i| {
                (
                    usable(&self.slots[i]),
                    std::cmp::Reverse(self.slots[i].last_used),
                )
            })
        else {
            return work.fail(LlmError::Other("no free slot".to_string()));
        };
        let keep = usable(&self.slots[i]);
        if let Err(e) = self.truncate(i, keep) {
            return work.fail(e);
        }
        let (end, logits) = match work {
            Work::Score { shared, .. } if keep < shared => (shared, false),
            _ => (prompt.len(), true),
        };
        self.slots[i].task = Some(Task {
            work,
            pending: prompt[keep..end].to_vec(),
            fed: 0,
            logits,
            t0,
            prompt_tokens: prompt.len(),
            cached_tokens: keep,
        });
    }

    /// Drops slot `i`'s cache after its first `keep` tokens.
    fn truncate(&mut self, i: usize, keep: usize) -> Result<(), LlmError> {
        let slot = &mut self.slots[i];
        if keep == slot.tokens.len() {
            return Ok(());
        }
        let seq = Some(slot.seq as u32);
        let cut = self
            .ctx
            .clear_kv_cache_seq(seq, Some(keep as u32), None)
            .map_err(|e| self.p.e("rewinding the KV cache", e))?;
        if cut {
            slot.tokens.truncate(keep);
            Ok(())
        } else {
            // A partial removal the cache cannot do: start the slot empty instead.
            let _ = self.ctx.clear_kv_cache_seq(seq, None, None);
            slot.tokens.clear();
            Err(self
                .p
                .e("rewinding the KV cache", "partial removal refused"))
        }
    }

    /// Fails every call in a slot and empties those slots.
    fn fail_busy(&mut self, e: impl Fn() -> LlmError) {
        for i in 0..self.slots.len() {
            if let Some(t) = self.slots[i].task.take() {
                t.work.fail(e());
                let seq = Some(self.slots[i].seq as u32);
                let _ = self.ctx.clear_kv_cache_seq(seq, None, None);
                self.slots[i].tokens.clear();
            }
        }
    }

    /// One decode over every busy slot.
    fn step(&mut self, batch: &mut LlamaBatch) {
        batch.clear();
        let mut budget = self.p.cfg.n_batch as usize;
        // (slot, batch index) of every logits row this step produces.
        let mut outs: Vec<(usize, i32)> = Vec::new();
        let mut add = |slot: &mut Slot, tok: LlamaToken, logits: bool| {
            let pos = slot.tokens.len() as i32;
            batch.add(tok, pos, &[slot.seq], logits).map(|()| {
                slot.tokens.push(tok);
                batch.n_tokens() - 1
            })
        };
        let mut bad = None;
        // Generating slots first: one token each, so no answer waits behind a long prompt.
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let next = match &mut slot.task {
                Some(Task {
                    work: Work::Chat { next, .. },
                    ..
                }) => next.take(),
                _ => None,
            };
            if let Some(tok) = next {
                match add(slot, tok, true) {
                    Ok(idx) => outs.push((i, idx)),
                    Err(e) => bad = Some(e.to_string()),
                }
                budget -= 1;
            }
        }
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if budget == 0 {
                break;
            }
            let Some(task) = slot.task.take() else {
                continue;
            };
            let left = task.pending.len() - task.fed;
            let take = left.min(budget);
            let mut task = task;
            for k in 0..take {
                let tok = task.pending[task.fed + k];
                let last = task.logits && task.fed + k + 1 == task.pending.len();
                match add(slot, tok, last) {
                    Ok(idx) if last => outs.push((i, idx)),
                    Ok(_) => {}
                    Err(e) => bad = Some(e.to_string()),
                }
            }
            task.fed += take;
            budget -= take;
            if take > 0 && task.fed == task.pending.len() && !task.logits {
                // A scoring's shared prefix is in: its first candidate follows, next step.
                task.read_candidate(0);
            }
            slot.task = Some(task);
        }
        let p = self.p;
        if let Some(e) = bad {
            return self.fail_busy(|| p.e("batch", &e));
        }
        if batch.n_tokens() == 0 {
            return;
        }
        if let Err(e) = self.ctx.decode(batch) {
            let e = e.to_string();
            return self.fail_busy(|| p.e("decode", &e));
        }
        for (i, idx) in outs {
            self.read(i, idx);
        }
    }

    /// Takes slot `i`'s logits at batch row `idx`: samples a chat's next token, scores a
    /// candidate, or answers a label request.
    fn read(&mut self, i: usize, idx: i32) {
        let Some(mut task) = self.slots[i].task.take() else {
            return;
        };
        let p = self.p;
        match &mut task.work {
            Work::Chat {
                sampler,
                max_new,
                bytes,
                generated,
                next,
                ..
            } => {
                if *max_new == 0 {
                    return self.finish(i, task);
                }
                let vocab = p.model.vocab();
                // sample() also accepts the token, as in the one-sequence worker.
                let tok = sampler.sample(&self.ctx, idx);
                let eog = vocab.is_eog(tok);
                if !eog {
                    bytes.extend(vocab.token_to_piece(tok, false, None));
                    *generated += 1;
                }
                if eog || *generated == *max_new {
                    return self.finish(i, task);
                }
                *next = Some(tok);
            }
            Work::Score {
                prompts,
                shared,
                scores,
                ..
            } => {
                scores.push(p.yes_minus_no(self.ctx.get_logits_ith(idx)));
                if scores.len() == prompts.len() {
                    return self.finish(i, task);
                }
                let (shared, next) = (*shared, scores.len());
                if let Err(e) = self.truncate(i, shared) {
                    return task.work.fail(e);
                }
                task.read_candidate(next);
                task.prompt_tokens += task.pending.len();
            }
            Work::Labels {
                labels, logprobs, ..
            } => {
                *logprobs = log_softmax_at(self.ctx.get_logits_ith(idx), labels);
                return self.finish(i, task);
            }
        }
        self.slots[i].task = Some(task);
    }

    fn finish(&mut self, i: usize, task: Task) {
        let u = |completion: usize| {
            let mut u = usage(task.prompt_tokens, completion, task.t0);
            u.cached_tokens = task.cached_tokens as u64;
            u
        };
        match task.work {
            Work::Chat {
                reply,
                bytes,
                generated,
                max_new,
                ..
            } => {
                let _ = reply.send(Ok(ChatResponse {
                    served: Default::default(),
                    content: String::from_utf8_lossy(&bytes).into_owned(),
                    usage: u(generated),
                    finish_reason: (generated == max_new).then(|| "length".to_string()),
                }));
            }
            Work::Score { reply, scores, .. } => {
                let _ = reply.send(Ok(ScoreResponse {
                    scores,
                    usage: u(0),
                }));
            }
            Work::Labels {
                reply, logprobs, ..
            } => {
                let _ = reply.send(Ok(LabelResponse {
                    logprobs,
                    usage: u(0),
                }));
            }
        }
        self.release(i);
    }

    fn release(&mut self, i: usize) {
        self.clock += 1;
        self.slots[i].last_used = self.clock;
        self.slots[i].task = None;
    }
}
