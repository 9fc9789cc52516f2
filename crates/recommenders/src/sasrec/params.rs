//! Every trainable tensor of SASRec lives in one flat `Vec<f32>`; a [`Layout`] names the spans.
//!
//! One buffer keeps Adam, the gradient checks, the "every tensor receives gradient" test and
//! the model file format trivial: they all walk the same list of named spans.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A contiguous tensor inside the flat parameter buffer, row-major `rows × cols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub off: usize,
    pub rows: usize,
    pub cols: usize,
}

impl Span {
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.off..self.off + self.len()
    }
}

/// Tensors of one self-attention block. Weights are stored `d_in × d_out` so that a layer is
/// `Y = X·W + b`, as TF's `dense`/`conv1d(k=1)` kernels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSpans {
    pub ln1_g: Span,
    pub ln1_b: Span,
    pub wq: Span,
    pub bq: Span,
    pub wk: Span,
    pub bk: Span,
    pub wv: Span,
    pub bv: Span,
    pub ln2_g: Span,
    pub ln2_b: Span,
    pub w1: Span,
    pub b1: Span,
    pub w2: Span,
    pub b2: Span,
}

impl BlockSpans {
    fn named(&self) -> [(&'static str, Span); 14] {
        [
            ("ln1.gamma", self.ln1_g),
            ("ln1.beta", self.ln1_b),
            ("attn.wq", self.wq),
            ("attn.bq", self.bq),
            ("attn.wk", self.wk),
            ("attn.bk", self.bk),
            ("attn.wv", self.wv),
            ("attn.bv", self.bv),
            ("ln2.gamma", self.ln2_g),
            ("ln2.beta", self.ln2_b),
            ("ffn.w1", self.w1),
            ("ffn.b1", self.b1),
            ("ffn.w2", self.w2),
            ("ffn.b2", self.b2),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub n_items: usize,
    pub maxlen: usize,
    pub d: usize,
    pub item_emb: Span,
    pub pos_emb: Span,
    pub blocks: Vec<BlockSpans>,
    pub lnf_g: Span,
    pub lnf_b: Span,
    pub total: usize,
}

impl Layout {
    pub fn new(n_items: usize, maxlen: usize, d: usize, n_blocks: usize) -> Self {
        let mut off = 0;
        let mut span = |rows: usize, cols: usize| {
            let s = Span { off, rows, cols };
            off += rows * cols;
            s
        };
        let item_emb = span(n_items, d);
        let pos_emb = span(maxlen, d);
        let blocks = (0..n_blocks)
            .map(|_| BlockSpans {
                ln1_g: span(1, d),
                ln1_b: span(1, d),
                wq: span(d, d),
                bq: span(1, d),
                wk: span(d, d),
                bk: span(1, d),
                wv: span(d, d),
                bv: span(1, d),
                ln2_g: span(1, d),
                ln2_b: span(1, d),
                w1: span(d, d),
                b1: span(1, d),
                w2: span(d, d),
                b2: span(1, d),
            })
            .collect();
        let lnf_g = span(1, d);
        let lnf_b = span(1, d);
        Layout {
            n_items,
            maxlen,
            d,
            item_emb,
            pos_emb,
            blocks,
            lnf_g,
            lnf_b,
            total: off,
        }
    }

    /// Every tensor with a stable name (`item_emb`, `block0.attn.wq`, …), in buffer order.
    pub fn named(&self) -> Vec<(String, Span)> {
        let mut v = vec![
            ("item_emb".to_string(), self.item_emb),
            ("pos_emb".to_string(), self.pos_emb),
        ];
        for (b, blk) in self.blocks.iter().enumerate() {
            for (name, s) in blk.named() {
                v.push((format!("block{b}.{name}"), s));
            }
        }
        v.push(("final_ln.gamma".to_string(), self.lnf_g));
        v.push(("final_ln.beta".to_string(), self.lnf_b));
        v
    }

    /// pmixer's initialisation: `xavier_normal_` on every matrix (embeddings included, fan_in =
    /// cols, fan_out = rows as torch computes it), zero biases, LayerNorm γ = 1, β = 0.
    pub fn init(&self, rng: &mut ChaCha8Rng) -> Vec<f32> {
        let mut p = vec![0.0f32; self.total];
        let mut xavier = |s: Span, p: &mut [f32]| {
            let std = (2.0 / (s.rows + s.cols) as f64).sqrt();
            for x in &mut p[s.range()] {
                *x = (std * standard_normal(rng)) as f32;
            }
        };
        xavier(self.item_emb, &mut p);
        xavier(self.pos_emb, &mut p);
        for blk in &self.blocks {
            for s in [blk.wq, blk.wk, blk.wv, blk.w1, blk.w2] {
                xavier(s, &mut p);
            }
            for s in [blk.ln1_g, blk.ln2_g] {
                p[s.range()].fill(1.0);
            }
        }
        p[self.lnf_g.range()].fill(1.0);
        p
    }
}

/// Box–Muller; `rand_distr` would be one more dependency for one line.
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
