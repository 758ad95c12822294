// ntm_ops: one onnxruntime custom op that runs a Neural Turing Machine (Graves et al. 2014, §3)
// over a batch of whole sequences, the computation `ntm export` writes as an ONNX Loop of
// standard operators (ntm/model/*.py), in one kernel call.
//
// Two ops in the domain "ai.ntm":
//   NTM          (inputs, memory_size, <weights>)                     -> (probabilities, attention)
//   NTMSequence  (inputs, memory_size, sequence_start, state, <weights>)
//                                                          -> (probabilities, attention, state_out)
//   NTMRagged    (inputs [E], item_shape [batch, 2], <weights>)       -> (probabilities)
//                (Triton's ragged batches: export/triton.py)
// <weights>, in this order (shapes for I inputs, O outputs, U units, R read heads, H heads,
// M memory width, P head parameters, N0 trained rows):
//   controller_kernel [I + R*M (+ U for the LSTM), 4U or U], controller_bias [4U or U],
//   initial_h [U or 0], initial_c [U or 0], head_kernel [U, P], head_bias [P],
//   output_kernel [U + R*M, O], output_bias [O], initial_reads [R, M],
//   initial_weight_logits [H, N0], initial_memory [N0, M] or [0] (optional; empty or absent:
//   every row starts at the memory_init attribute)
// The memory rows N, the state layout and every equation follow the Python model exactly
// (ntm/model/cell.py, addressing.py, memory.py; ntm/contract/state_layout.py); the parity tests
// compare the two.
//
// Built against onnxruntime's C API only (no link to onnxruntime): the op asks for API version
// kApiVersion, the oldest onnxruntime the project supports, so one library loads into every
// supported onnxruntime. Errors in the input come back as an OrtStatus naming what is wrong.

#include <onnxruntime_c_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

namespace {

constexpr uint32_t kApiVersion = 20;  // onnxruntime 1.20, the project's floor
constexpr float kEpsilon = 1e-6f;     // ntm.model.numerics.EPSILON
constexpr const char* kDomain = "ai.ntm";
constexpr int kWeightCount = 11;
const char* const kWeightNames[kWeightCount] = {
    "controller_kernel", "controller_bias", "initial_h", "initial_c", "head_kernel",
    "head_bias", "output_kernel", "output_bias", "initial_reads", "initial_weight_logits",
    "initial_memory"};
// initial_memory, the last weight, came after the first models were written: a node without it
// has a constant initial memory.
constexpr int kOptionalWeight = kWeightCount - 1;
// A call never allocates more than this many floats (1 GiB) for its memory state (batch x N x
// M) or its attention output (batch x time x heads x N, written whether or not the caller
// fetches it): a bad memory_size, or too many long sequences at once, gets an error instead of
// an allocation that takes the machine down.
constexpr int64_t kMaxFloats = int64_t(1) << 28;

const OrtApi* g_api = nullptr;

typedef float v8 __attribute__((vector_size(32), aligned(4)));

// Float arrays on 64-byte boundaries (a cache line). The vector loads take any address, but
// a default allocation of the packed weights (large: from mmap, 16 bytes past a page start)
// left every other eight-float load straddling two cache lines, and a session's speed
// depended on where its arrays landed (docs/performance.md).
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, kAlign); }
  template <typename U>
  bool operator==(const CacheLineAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const CacheLineAllocator<U>&) const { return false; }
};
using Floats = std::vector<float, CacheLineAllocator<float>>;

inline v8 load8(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store8(float* p, v8 v) { std::memcpy(p, &v, sizeof(v)); }

// -- scalar functions written so that loops over them vectorise ----------------------------
// Cephes-style polynomials, relative error ~2e-7 (float32's own rounding is 6e-8).
inline float exp_approx(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// log of a positive, normal float (the callers add an epsilon first).
inline float log_approx(float x) {
  int32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  float e = static_cast<float>(((bits >> 23) & 0xff) - 126);
  bits = (bits & 0x007fffff) | 0x3f000000;  // mantissa in [0.5, 1)
  float m;
  std::memcpy(&m, &bits, sizeof(m));
  bool small = m < 0.707106781186547524f;
  e = small ? e - 1.0f : e;
  m = small ? m + m - 1.0f : m - 1.0f;
  float z = m * m;
  float p = 7.0376836292e-2f;
  p = p * m - 1.1514610310e-1f;
  p = p * m + 1.1676998740e-1f;
  p = p * m - 1.2420140846e-1f;
  p = p * m + 1.4249322787e-1f;
  p = p * m - 1.6668057665e-1f;
  p = p * m + 2.0000714765e-1f;
  p = p * m - 2.4999993993e-1f;
  p = p * m + 3.3333331174e-1f;
  float y = p * m * z;
  y += e * -2.12194440e-4f;
  y -= 0.5f * z;
  return m + y + e * 0.693359375f;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }
inline float tanh_approx(float x) { return 2.0f / (1.0f + exp_approx(-2.0f * x)) - 1.0f; }
inline float clip(float x, float limit) { return std::min(std::max(x, -limit), limit); }
// log(1 + y) for y >= 0, accurate for tiny y as well (1 + y rounds to 1 there).
inline float log1p_approx(float y) {
  const float u = 1.0f + y;
  return u == 1.0f ? y : log_approx(u) * (y / (u - 1.0f));
}
// TensorFlow's softplus, log(1 + e^x), without overflow for large x: max(x, 0) + log(1 + e^-|x|).
inline float softplus(float x) { return std::max(x, 0.0f) + log1p_approx(exp_approx(-std::fabs(x))); }

// The same functions on eight floats at once (GCC vector extensions; -march picks the
// instructions). The hot loops below run over N rows or 4U gates in blocks of eight with these,
// and finish a remainder with the scalar versions above (equal to rounding).
typedef int32_t v8i __attribute__((vector_size(32), aligned(4)));

inline v8 splat(float x) { return v8{x, x, x, x, x, x, x, x}; }
inline v8 vmin(v8 a, v8 b) { return a < b ? a : b; }
inline v8 vmax(v8 a, v8 b) { return a > b ? a : b; }
inline v8 as_float(v8i v) {
  v8 f;
  std::memcpy(&f, &v, sizeof(f));
  return f;
}
inline v8i as_int(v8 v) {
  v8i i;
  std::memcpy(&i, &v, sizeof(i));
  return i;
}
inline float hsum(v8 v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}
inline float hmax(v8 v) {
  float top = v[0];
  for (int k = 1; k < 8; ++k) top = std::max(top, v[k]);
  return top;
}

inline v8 exp8(v8 x) {
  x = vmax(vmin(x, splat(88.0f)), splat(-87.0f));
  const v8 y = x * 1.44269504088896341f + 0.5f;
  v8 n = __builtin_convertvector(__builtin_convertvector(y, v8i), v8);
  n = n > y ? n - 1.0f : n;  // floor (conversion truncates toward zero)
  const v8 r = x - n * 0.693359375f + n * 2.12194440e-4f;
  const v8 r2 = r * r;
  v8 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  return p * as_float((__builtin_convertvector(n, v8i) + 127) << 23);
}

inline v8 log8(v8 x) {
  v8i bits = as_int(x);
  v8 e = __builtin_convertvector(((bits >> 23) & 0xff) - 126, v8);
  v8 m = as_float((bits & 0x007fffff) | 0x3f000000);
  const auto small = m < 0.707106781186547524f;
  e = small ? e - 1.0f : e;
  m = small ? m + m - 1.0f : m - 1.0f;
  const v8 z = m * m;
  v8 p = splat(7.0376836292e-2f);
  p = p * m - 1.1514610310e-1f;
  p = p * m + 1.1676998740e-1f;
  p = p * m - 1.2420140846e-1f;
  p = p * m + 1.4249322787e-1f;
  p = p * m - 1.6668057665e-1f;
  p = p * m + 2.0000714765e-1f;
  p = p * m - 2.4999993993e-1f;
  p = p * m + 3.3333331174e-1f;
  v8 y = p * m * z;
  y += e * -2.12194440e-4f;
  y -= 0.5f * z;
  return m + y + e * 0.693359375f;
}

inline v8 sigmoid8(v8 x) { return 1.0f / (1.0f + exp8(-x)); }
inline v8 tanh8(v8 x) { return 2.0f / (1.0f + exp8(-2.0f * x)) - 1.0f; }

// A weight matrix [k, n] (n a multiple of 16) stored in column blocks of up to 64: block j
// holds columns 64j .. 64j + width - 1 as [k, width], contiguous, so a product walks each block
// front to back (one stream the prefetcher follows) instead of striding over whole rows.
struct Blocked {
  int64_t k = 0, n = 0;
  Floats data;

  static constexpr int64_t kWidth = 64;
  int64_t width(int64_t j0) const { return std::min(kWidth, n - j0); }
  const float* block(int64_t j0) const { return data.data() + k * j0; }

  // w: [k, n_in] row-major; columns n_in .. n (padding) are zero.
  Blocked(const float* w, int64_t rows, int64_t n_in, int64_t n_padded)
      : k(rows), n(n_padded), data(rows * n_padded, 0.0f) {
    for (int64_t j0 = 0; j0 < n; j0 += kWidth) {
      const int64_t wb = width(j0);
      float* dst = data.data() + k * j0;
      for (int64_t q = 0; q < k; ++q)
        for (int64_t jj = 0; jj < wb && j0 + jj < n_in; ++jj) dst[q * wb + jj] = w[q * n_in + j0 + jj];
    }
  }
  Blocked() = default;
};

// One row: out[j0 .. j0 + 8 NV) = bias + x @ block, the block's NV vectors in registers.
template <int NV>
inline void row_block(const float* x, int64_t k, const float* blk, const float* bias, float* out) {
  v8 c[NV];
  for (int u = 0; u < NV; ++u) c[u] = load8(bias + 8 * u);
  for (int64_t q = 0; q < k; ++q) {
    const float xq = x[q];
    const float* wq = blk + q * 8 * NV;
    for (int u = 0; u < NV; ++u) c[u] += xq * load8(wq + 8 * u);
  }
  for (int u = 0; u < NV; ++u) store8(out + 8 * u, c[u]);
}

// out[r, :] = bias + a[r, :] @ w for r < rows.  a: [rows, k] with row stride lda; out: [rows,
// n] with row stride ldo. Register-blocked: four rows x 16 columns of the output (or one row x
// a whole 64-column block) stay in registers while k runs, so each weight is read once per
// four rows. Batch 1 is a matrix-vector product, bound by reading w from cache: the one-row
// path reads each block once, as one stream. (Eight-float vectors: sixteen-float ones measured
// slower here.)
void matmul_bias(const float* a, int64_t lda, int64_t rows, const Blocked& w, const float* bias,
                 float* out, int64_t ldo) {
  const int64_t k = w.k;
  for (int64_t j0 = 0; j0 < w.n; j0 += Blocked::kWidth) {
    const int64_t wb = w.width(j0);
    const float* blk = w.block(j0);
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
      const float* a0 = a + r * lda;
      for (int64_t jj = 0; jj < wb; jj += 16) {
        v8 c00 = load8(bias + j0 + jj), c01 = load8(bias + j0 + jj + 8);
        v8 c10 = c00, c11 = c01, c20 = c00, c21 = c01, c30 = c00, c31 = c01;
        for (int64_t q = 0; q < k; ++q) {
          const v8 w0 = load8(blk + q * wb + jj), w1 = load8(blk + q * wb + jj + 8);
          const float x0 = a0[q], x1 = a0[lda + q], x2 = a0[2 * lda + q], x3 = a0[3 * lda + q];
          c00 += x0 * w0; c01 += x0 * w1;
          c10 += x1 * w0; c11 += x1 * w1;
          c20 += x2 * w0; c21 += x2 * w1;
          c30 += x3 * w0; c31 += x3 * w1;
        }
        float* o = out + r * ldo + j0 + jj;
        store8(o, c00); store8(o + 8, c01);
        store8(o + ldo, c10); store8(o + ldo + 8, c11);
        store8(o + 2 * ldo, c20); store8(o + 2 * ldo + 8, c21);
        store8(o + 3 * ldo, c30); store8(o + 3 * ldo + 8, c31);
      }
    }
    for (; r < rows; ++r) {
      const float* x = a + r * lda;
      float* o = out + r * ldo + j0;
      switch (wb / 8) {
        case 8: row_block<8>(x, k, blk, bias + j0, o); break;
        case 6: row_block<6>(x, k, blk, bias + j0, o); break;
        case 4: row_block<4>(x, k, blk, bias + j0, o); break;
        default: row_block<2>(x, k, blk, bias + j0, o); break;
      }
    }
  }
}

// -- the model -----------------------------------------------------------------------------
struct Config {
  int64_t memory_width = 0;
  bool lstm = true;
  int64_t units = 0;
  int64_t read_heads = 0;
  int64_t write_heads = 0;
  int64_t shift_range = 0;
  float clip_value = 20.0f;
  float memory_init = 1e-6f;
  float grow_margin = 30.0f;
  float grow_power = 2.0f;
  int64_t max_rows = 0;  // the most memory rows a call may ask for
  std::vector<int64_t> buckets;  // rows the model chooses from (memory_size <= 0) ...
  std::vector<int64_t> longest;  // ... and the most time steps each holds

  int64_t heads() const { return read_heads + write_heads; }
  int64_t shifts() const { return 2 * shift_range + 1; }
  int64_t per_head() const { return memory_width + 3 + shifts(); }
  int64_t head_params() const { return heads() * per_head() + write_heads * 2 * memory_width; }
  int64_t reads_width() const { return read_heads * memory_width; }
  int64_t controller_state() const { return lstm ? 2 * units : 0; }
  int64_t fixed_state() const { return controller_state() + reads_width(); }
  int64_t per_row_state() const { return heads() + memory_width; }
};

// The weights laid out for the step, once per kernel when they are constant (initializers,
// as ntm export writes them): every matrix's columns padded to a multiple of 16, so each
// product runs in whole vector blocks, and the output layer transposed (a few outputs: one dot
// product each beats a product over a few columns).
struct Packed {
  int64_t in = 0, out = 0, trained_rows = 0;
  int64_t zw = 0, zpad = 0;      // controller product: columns, padded
  int64_t pw = 0, ppad = 0;      // head parameters: columns, padded
  int64_t ow = 0;                // output layer's inputs: U + R*M
  Blocked controller_kernel, head_kernel;
  Floats controller_bias, head_bias;
  Floats output_t, output_bias;  // [O, U + R*M], [O]
  Floats initial_h, initial_c, initial_reads, initial_logits;
  Floats initial_memory;  // [N0, M], or empty: every row memory_init
};

inline int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

// [k, n] row-major -> [k, npad], zero columns added.
Floats pad_columns(const float* w, int64_t k, int64_t n, int64_t npad) {
  Floats out(k * npad, 0.0f);
  for (int64_t q = 0; q < k; ++q) std::copy_n(w + q * n, n, out.data() + q * npad);
  return out;
}

// Everything that carries from one step to the next, for the whole batch, plus scratch space;
// allocated once per call, never inside the time loop.
struct Machine {
  const Config& c;
  const Packed& w;
  int64_t batch, rows, input_size, output_size, controller_in;
  float strength_scale;
  Floats h, cell, reads, weights, memory;  // [B,U] [B,U] [B,R,M] [B,H,N] [B,M,N]
  Floats x, z, hp, out_in;                 // per step, whole batch
  Floats scratch;        // per batch row (scratch_stride): [H, N], 3 x [N] and 2R + 8
  int64_t scratch_stride = 0;
  Floats write_vectors;  // per write head: erase [M], add [M]

  Machine(const Config& config, const Packed& parameters, int64_t b, int64_t n)
      : c(config), w(parameters), batch(b), rows(n), input_size(parameters.in),
        output_size(parameters.out) {
    const int64_t u = c.units, m = c.memory_width, heads = c.heads();
    controller_in = input_size + c.reads_width() + (c.lstm ? u : 0);
    h.assign(b * u, 0.0f);
    cell.assign(c.lstm ? b * u : 0, 0.0f);
    reads.assign(b * c.reads_width(), 0.0f);
    weights.assign(b * heads * n, 0.0f);
    memory.assign(b * n * m, 0.0f);
    x.assign(b * controller_in, 0.0f);
    z.assign(b * std::max(w.zpad, w.out), 0.0f);
    hp.assign(b * w.ppad, 0.0f);
    out_in.assign(b * (u + c.reads_width()), 0.0f);
    scratch_stride = (heads + 3) * n + 2 * c.shift_range + 8;
    scratch.assign(b * scratch_stride, 0.0f);
    write_vectors.assign(2 * c.write_heads * m, 0.0f);
    // strength_scale in cell.py: (log N / log N0) ** p, exactly 1 at N0.
    strength_scale = std::pow(std::log(static_cast<float>(n)) /
                                  std::log(static_cast<float>(w.trained_rows)),
                              c.grow_power);
  }

  // The learned initial state (cell.py initial_state), the logits extended to N rows
  // (extend_initial_logits): added rows get each head's minimum minus the margin.
  void start() {
    const int64_t u = c.units, m = c.memory_width, heads = c.heads(), n = rows;
    const int64_t n0 = w.trained_rows;
    Floats initial(heads * n);
    for (int64_t hd = 0; hd < heads; ++hd) {
      const float* logits = w.initial_logits.data() + hd * n0;
      const float floor = *std::min_element(logits, logits + n0) - c.grow_margin;
      float* row = initial.data() + hd * n;
      for (int64_t i = 0; i < n; ++i) row[i] = i < n0 ? logits[i] : floor;
      const float top = *std::max_element(row, row + n);
      float sum = 0.0f;
      for (int64_t i = 0; i < n; ++i) sum += (row[i] = exp_approx(row[i] - top));
      for (int64_t i = 0; i < n; ++i) row[i] /= sum;
    }
    for (int64_t b = 0; b < batch; ++b) {
      if (c.lstm) {
        std::copy(w.initial_h.begin(), w.initial_h.end(), h.begin() + b * u);
        std::copy(w.initial_c.begin(), w.initial_c.end(), cell.begin() + b * u);
      }
      std::copy(w.initial_reads.begin(), w.initial_reads.end(),
                reads.begin() + b * c.reads_width());
      std::copy(initial.begin(), initial.end(), weights.begin() + b * heads * n);
    }
    // Memory is held [B, M, N]; the learned rows come [N0, M]. Rows past them: memory_init.
    const int64_t learned = w.initial_memory.empty() ? 0 : std::min(n, n0);
    float* first = memory.data();
    for (int64_t j = 0; j < m; ++j) {
      float* column = first + j * n;
      for (int64_t i = 0; i < learned; ++i) column[i] = w.initial_memory[i * m + j];
      std::fill(column + learned, column + n, c.memory_init);
    }
    for (int64_t b = 1; b < batch; ++b)
      std::copy(first, first + m * n, memory.begin() + b * m * n);
  }

  // state [B, S] in the layout of ntm.contract.state_layout: h, c, reads, weights, memory.
  void load(const float* state) {
    const int64_t s = c.fixed_state() + rows * c.per_row_state();
    const int64_t u = c.units, rw = c.reads_width(), hn = c.heads() * rows;
    const int64_t nm = rows * c.memory_width;
    for (int64_t b = 0; b < batch; ++b) {
      const float* p = state + b * s;
      if (c.lstm) {
        std::copy(p, p + u, h.begin() + b * u);
        std::copy(p + u, p + 2 * u, cell.begin() + b * u);
        p += 2 * u;
      }
      std::copy(p, p + rw, reads.begin() + b * rw);
      std::copy(p + rw, p + rw + hn, weights.begin() + b * hn);
      const float* rows_in = p + rw + hn;  // [N, M] in the state, [M, N] here
      float* mem = memory.data() + b * nm;
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < c.memory_width; ++j) mem[j * rows + i] = rows_in[i * c.memory_width + j];
    }
  }

  void save(float* state) const {
    const int64_t s = c.fixed_state() + rows * c.per_row_state();
    const int64_t u = c.units, rw = c.reads_width(), hn = c.heads() * rows;
    const int64_t nm = rows * c.memory_width;
    for (int64_t b = 0; b < batch; ++b) {
      float* p = state + b * s;
      if (c.lstm) {
        std::copy(h.begin() + b * u, h.begin() + (b + 1) * u, p);
        std::copy(cell.begin() + b * u, cell.begin() + (b + 1) * u, p + u);
        p += 2 * u;
      }
      std::copy(reads.begin() + b * rw, reads.begin() + (b + 1) * rw, p);
      std::copy(weights.begin() + b * hn, weights.begin() + (b + 1) * hn, p + rw);
      float* rows_out = p + rw + hn;
      const float* mem = memory.data() + b * nm;
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < c.memory_width; ++j) rows_out[i * c.memory_width + j] = mem[j * rows + i];
    }
  }

  // The controller (controller.py): LSTM gates i, f, g, o from one product of [x; r; h], or
  // one tanh layer of [x; r]. inputs: [B, T, I] at step t.
  void controller(const float* inputs, int64_t time, int64_t t) {
    const int64_t u = c.units, rw = c.reads_width();
    for (int64_t b = 0; b < batch; ++b) {
      float* xb = x.data() + b * controller_in;
      std::copy_n(inputs + (b * time + t) * input_size, input_size, xb);
      std::copy_n(reads.data() + b * rw, rw, xb + input_size);
      if (c.lstm) std::copy_n(h.data() + b * u, u, xb + input_size + rw);
    }
    const int64_t zw = w.zpad;
    matmul_bias(x.data(), controller_in, batch, w.controller_kernel, w.controller_bias.data(),
                z.data(), zw);
    for (int64_t b = 0; b < batch; ++b) {
      const float* zb = z.data() + b * zw;
      float* hb = h.data() + b * u;
      if (!c.lstm) {
        int64_t j = 0;
        for (; j + 8 <= u; j += 8) store8(hb + j, tanh8(load8(zb + j)));
        for (; j < u; ++j) hb[j] = tanh_approx(zb[j]);
        continue;
      }
      float* cb = cell.data() + b * u;
      int64_t j = 0;
      for (; j + 8 <= u; j += 8) {
        const v8 cj = sigmoid8(load8(zb + u + j)) * load8(cb + j) +
                      sigmoid8(load8(zb + j)) * tanh8(load8(zb + 2 * u + j));
        store8(cb + j, cj);
        store8(hb + j, sigmoid8(load8(zb + 3 * u + j)) * tanh8(cj));
      }
      for (; j < u; ++j) {
        const float cj = sigmoid(zb[u + j]) * cb[j] + sigmoid(zb[j]) * tanh_approx(zb[2 * u + j]);
        cb[j] = cj;
        hb[j] = sigmoid(zb[3 * u + j]) * tanh_approx(cj);
      }
    }
  }

  // Every head's key against every memory row, and the rows' norms, in one pass over the
  // memory: for each block of eight rows the products accumulate in registers over the M
  // columns (up to four heads at a time), instead of M passes that load and store them.
  // p: the row's head parameters (each head's key first); mem: [M, N] -> dots [H, N] (k . M(i))
  // and norms [N] (sqrt(|M(i)|^2 + eps^2)).
  void key_products(const float* p, const float* mem, float* dots, float* norms) const {
    const int64_t m = c.memory_width, n = rows, heads = c.heads(), ph = c.per_head();
    const int64_t n8 = n - n % 8;
    for (int64_t h0 = 0; h0 < heads; h0 += 4) {
      const int64_t nh = std::min<int64_t>(4, heads - h0);
      const float* k0 = p + h0 * ph;
      switch (nh) {
        case 4: key_block<4>(k0, ph, mem, dots + h0 * n, norms, h0 == 0, n8); break;
        case 3: key_block<3>(k0, ph, mem, dots + h0 * n, norms, h0 == 0, n8); break;
        case 2: key_block<2>(k0, ph, mem, dots + h0 * n, norms, h0 == 0, n8); break;
        default: key_block<1>(k0, ph, mem, dots + h0 * n, norms, h0 == 0, n8); break;
      }
      for (int64_t i = n8; i < n; ++i) {  // the last n % 8 rows
        float sq = kEpsilon * kEpsilon;
        for (int64_t hd = 0; hd < nh; ++hd) dots[(h0 + hd) * n + i] = 0.0f;
        for (int64_t j = 0; j < m; ++j) {
          const float v = mem[j * n + i];
          sq += v * v;
          for (int64_t hd = 0; hd < nh; ++hd) dots[(h0 + hd) * n + i] += k0[hd * ph + j] * v;
        }
        if (h0 == 0) norms[i] = std::sqrt(sq);
      }
    }
  }

  template <int NH>
  void key_block(const float* keys, int64_t ph, const float* mem, float* dots, float* norms,
                 bool with_norms, int64_t n8) const {
    const int64_t m = c.memory_width, n = rows;
    for (int64_t i = 0; i < n8; i += 8) {
      v8 d[NH];
      for (int h = 0; h < NH; ++h) d[h] = splat(0.0f);
      v8 sq = splat(kEpsilon * kEpsilon);
      for (int64_t j = 0; j < m; ++j) {
        const v8 v = load8(mem + j * n + i);
        sq += v * v;
        for (int h = 0; h < NH; ++h) d[h] += keys[h * ph + j] * v;
      }
      for (int h = 0; h < NH; ++h) store8(dots + h * n + i, d[h]);
      if (with_norms) {
        // sqrt(|k|^2 + eps^2) sqrt(|M(i)|^2 + eps^2): the model's sqrt of the product, to
        // rounding
        for (int k = 0; k < 8; ++k) sq[k] = std::sqrt(sq[k]);
        store8(norms + i, sq);
      }
    }
  }

  // Addressing (addressing.py), read and write (memory.py) for batch row b; the head
  // parameters of this step are in hp. attention: this row's [H, N] of the output, or null.
  // The memory is held column by column ([M, N]: each column's N values contiguous), so every
  // loop below runs over the N rows, long and contiguous, rather than over M = 20.
  void memory_step(int64_t b, float* attention) {
    const int64_t m = c.memory_width, n = rows, heads = c.heads(), s = c.shifts();
    const int64_t ph = c.per_head(), rh = c.read_heads;
    const float* p = hp.data() + b * w.ppad;
    float* mem = memory.data() + b * n * m;  // [M, N]
    float* wb = weights.data() + b * heads * n;
    float* dots = scratch.data() + b * scratch_stride;  // k_h . M(i), [H, N]
    float* norms = dots + heads * n;                     // sqrt(|M(i)|^2 + eps^2), [N]
    float* shifted = norms + n;                          // [N]
    float* gated = shifted + n;                          // [N + 2R]: the ring, R either side
    key_products(p, mem, dots, norms);
    for (int64_t hd = 0; hd < heads; ++hd) {
      const float* q = p + hd * ph;
      const float* key = q;
      float* content = dots + hd * n;
      const float strength = softplus(q[m]) * strength_scale;
      const float gate = sigmoid(q[m + 1]);
      const float gamma = 1.0f + softplus(q[m + 2 + s]);
      float shift[64];
      {  // softmax over the S shift logits
        const float* logits = q + m + 2;
        float top = logits[0];
        for (int64_t j = 1; j < s; ++j) top = std::max(top, logits[j]);
        float sum = 0.0f;
        for (int64_t j = 0; j < s; ++j) sum += (shift[j] = exp_approx(logits[j] - top));
        for (int64_t j = 0; j < s; ++j) shift[j] /= sum;
      }
      float key_sq = kEpsilon * kEpsilon;
      for (int64_t j = 0; j < m; ++j) key_sq += key[j] * key[j];
      // content weighting (eqs. 5-6): softmax of strength x cosine
      const int64_t n8 = n - n % 8;
      v8 top8 = splat(-std::numeric_limits<float>::infinity());
      const float key_norm = std::sqrt(key_sq);
      for (int64_t i = 0; i < n8; i += 8) {
        const v8 v = strength * (load8(content + i) / (key_norm * load8(norms + i) + kEpsilon));
        store8(content + i, v);
        top8 = vmax(top8, v);
      }
      float top = hmax(top8);
      for (int64_t i = n8; i < n; ++i) {
        content[i] = strength * (content[i] / (key_norm * norms[i] + kEpsilon));
        top = std::max(top, content[i]);
      }
      v8 sum8 = splat(0.0f);
      for (int64_t i = 0; i < n8; i += 8) {
        const v8 v = exp8(load8(content + i) - top);
        store8(content + i, v);
        sum8 += v;
      }
      float sum = hsum(sum8);
      for (int64_t i = n8; i < n; ++i) {
        content[i] = exp_approx(content[i] - top);
        sum += content[i];
      }
      const float inv = 1.0f / sum;
      // interpolation (eq. 7): w_{t-1} + g (w^c - w_{t-1}), into `gated` at offset R with
      // the ring's neighbours copied around it, so the shift below reads without wrapping
      const int64_t range = c.shift_range;
      float* previous = wb + hd * n;
      float* ring = gated + range;
      for (int64_t i = 0; i < n; ++i)
        ring[i] = previous[i] + gate * (content[i] * inv - previous[i]);
      for (int64_t k = 0; k < range; ++k) {
        gated[k] = ring[((k - range) % n + n) % n];
        ring[n + k] = ring[k % n];
      }
      // circular shift (eq. 8), w~(i) = sum_j w^g(i - offset_j) s_j with offsets -R..R, and
      // sharpening (eq. 9), exp(gamma log(w~ + eps)), in one pass: w^g(i - offset_j) is
      // gated[i + 2R - j]
      v8 total8 = splat(0.0f);
      for (int64_t i = 0; i < n8; i += 8) {
        v8 v = splat(0.0f);
        for (int64_t j = 0; j < s; ++j) v += shift[j] * load8(gated + i + 2 * range - j);
        v = exp8(gamma * log8(v + kEpsilon));
        store8(shifted + i, v);
        total8 += v;
      }
      float total = hsum(total8);
      for (int64_t i = n8; i < n; ++i) {
        float v = 0.0f;
        for (int64_t j = 0; j < s; ++j) v += shift[j] * gated[i + 2 * range - j];
        shifted[i] = exp_approx(gamma * log_approx(v + kEpsilon));
        total += shifted[i];
      }
      // normalised with an epsilon; the new weighting replaces w_{t-1} and is the attention
      const float norm = 1.0f / (total + kEpsilon);
      float* current = wb + hd * n;
      float* out = attention != nullptr ? attention + hd * n : nullptr;
      for (int64_t i = 0; i < n8; i += 8) {
        const v8 v = load8(shifted + i) * norm;
        store8(current + i, v);
        if (out != nullptr) store8(out + i, v);
      }
      for (int64_t i = n8; i < n; ++i) {
        current[i] = shifted[i] * norm;
        if (out != nullptr) out[i] = current[i];
      }
    }
    // read (eq. 2) from M_{t-1}, before the write
    float* rb = reads.data() + b * c.reads_width();
    // every write head's erase (sigmoid) and add (tanh) vectors, eight columns at a time
    const float* write_params = p + heads * ph;
    for (int64_t hw = 0; hw < c.write_heads; ++hw) {
      const float* raw = write_params + hw * 2 * m;
      float* out = write_vectors.data() + hw * 2 * m;
      int64_t j = 0;
      for (; j + 8 <= m; j += 8) {
        store8(out + j, sigmoid8(load8(raw + j)));
        store8(out + m + j, tanh8(load8(raw + m + j)));
      }
      for (; j < m; ++j) {
        out[j] = sigmoid(raw[j]);
        out[m + j] = tanh_approx(raw[m + j]);
      }
    }
    if (rh == 1 && c.write_heads == 1) {
      // The paper's one read and one write head: each column is read and rewritten in one
      // pass (the read takes its value before the write changes it).
      const float* wr = wb;
      const float* ww = wb + n;
      const int64_t n8 = n - n % 8;
      for (int64_t j = 0; j < m; ++j) {
        float* column = mem + j * n;
        const float erase = write_vectors[j];
        const float add = write_vectors[m + j];
        v8 dot8 = splat(0.0f);
        for (int64_t i = 0; i < n8; i += 8) {
          const v8 v = load8(column + i), wi = load8(ww + i);
          dot8 += load8(wr + i) * v;
          store8(column + i, v * (1.0f - wi * erase) + wi * add);
        }
        float dot = hsum(dot8);
        for (int64_t i = n8; i < n; ++i) {
          dot += wr[i] * column[i];
          column[i] = column[i] * (1.0f - ww[i] * erase) + ww[i] * add;
        }
        rb[j] = dot;
      }
      return;
    }
    for (int64_t r = 0; r < rh; ++r) {
      const float* wr = wb + r * n;
      for (int64_t j = 0; j < m; ++j) {
        const float* column = mem + j * n;
        const int64_t n8 = n - n % 8;
        v8 dot8 = splat(0.0f);
        for (int64_t i = 0; i < n8; i += 8) dot8 += load8(wr + i) * load8(column + i);
        float dot = hsum(dot8);
        for (int64_t i = n8; i < n; ++i) dot += wr[i] * column[i];
        rb[r * m + j] = dot;
      }
    }
    // erase and add (eqs. 3-4); several write heads: erasures multiply, additions sum
    for (int64_t j = 0; j < m; ++j) {
      float* column = mem + j * n;
      for (int64_t hw = 0; hw < c.write_heads; ++hw) {
        const float erase = write_vectors[hw * 2 * m + j];
        const float add = write_vectors[hw * 2 * m + m + j];
        const float* ww = wb + (rh + hw) * n;
        if (c.write_heads == 1) {
          for (int64_t i = 0; i < n; ++i)
            column[i] = column[i] * (1.0f - ww[i] * erase) + ww[i] * add;
        } else {  // keep = prod_h (1 - w_h e_h), added = sum_h w_h a_h, on M_{t-1}
          float* keep = gated;   // free scratch now, [N] each
          float* added = shifted;
          if (hw == 0) {
            std::fill_n(keep, n, 1.0f);
            std::fill_n(added, n, 0.0f);
          }
          for (int64_t i = 0; i < n; ++i) {
            keep[i] *= 1.0f - ww[i] * erase;
            added[i] += ww[i] * add;
          }
          if (hw + 1 == c.write_heads)
            for (int64_t i = 0; i < n; ++i) column[i] = column[i] * keep[i] + added[i];
        }
      }
    }
  }

  // One time step for the whole batch; probabilities [B, T, O] and attention [B, T, H, N].
  void step(const float* inputs, int64_t time, int64_t t, float* probabilities,
            float* attention) {
    const int64_t u = c.units, rw = c.reads_width();
    const int64_t hn = c.heads() * rows;
    controller(inputs, time, t);
    matmul_bias(h.data(), u, batch, w.head_kernel, w.head_bias.data(), hp.data(), w.ppad);
    for (int64_t b = 0; b < batch; ++b) {
      float* row = hp.data() + b * w.ppad;
      for (int64_t j = 0; j < w.pw; ++j) row[j] = clip(row[j], c.clip_value);
    }
    for (int64_t b = 0; b < batch; ++b)
      memory_step(b, attention ? attention + (b * time + t) * hn : nullptr);
    // output layer (cell.py output_logits): clip(W [h; r] + b), then the sigmoid; one dot
    // product of [h; r] with each output's column
    const int64_t ow = w.ow, ow8 = ow - ow % 8;
    for (int64_t b = 0; b < batch; ++b) {
      float* in = out_in.data();
      std::copy_n(h.data() + b * u, u, in);
      std::copy_n(reads.data() + b * rw, rw, in + u);
      for (int64_t o = 0; o < output_size; ++o) {
        const float* col = w.output_t.data() + o * ow;
        v8 acc = splat(0.0f);
        for (int64_t j = 0; j < ow8; j += 8) acc += load8(in + j) * load8(col + j);
        float logit = w.output_bias[o] + hsum(acc);
        for (int64_t j = ow8; j < ow; ++j) logit += in[j] * col[j];
        probabilities[(b * time + t) * output_size + o] =
            sigmoid(clip(logit, c.clip_value));
      }
    }
  }
};

// -- onnxruntime plumbing ------------------------------------------------------------------
struct Failure {
  OrtErrorCode code;
  std::string message;
};

struct Tensor {
  const float* data = nullptr;
  const int32_t* ints = nullptr;
  std::vector<int64_t> shape;
  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

#define ORT_CHECK(expr)                                                          \
  do {                                                                           \
    OrtStatus* status_ = (expr);                                                 \
    if (status_ != nullptr) {                                                    \
      std::string message_ = g_api->GetErrorMessage(status_);                    \
      g_api->ReleaseStatus(status_);                                             \
      throw Failure{ORT_RUNTIME_EXCEPTION, message_};                            \
    }                                                                            \
  } while (0)

Tensor tensor_of(const OrtValue* value, const char* name, bool ints) {
  if (value == nullptr) throw Failure{ORT_INVALID_ARGUMENT, std::string(name) + " is missing"};
  OrtTensorTypeAndShapeInfo* info = nullptr;
  ORT_CHECK(g_api->GetTensorTypeAndShape(value, &info));
  size_t rank = 0;
  ONNXTensorElementDataType type;
  OrtStatus* status = g_api->GetTensorElementType(info, &type);
  if (status == nullptr) status = g_api->GetDimensionsCount(info, &rank);
  Tensor t;
  t.shape.resize(rank);
  if (status == nullptr) status = g_api->GetDimensions(info, t.shape.data(), rank);
  g_api->ReleaseTensorTypeAndShapeInfo(info);
  ORT_CHECK(status);
  const ONNXTensorElementDataType want =
      ints ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  if (type != want)
    throw Failure{ORT_INVALID_ARGUMENT,
                  std::string(name) + " must be " + (ints ? "int32" : "float32")};
  void* data = nullptr;
  ORT_CHECK(g_api->GetTensorMutableData(const_cast<OrtValue*>(value), &data));
  if (ints) t.ints = static_cast<const int32_t*>(data);
  else t.data = static_cast<const float*>(data);
  return t;
}

// Whether an optional input was given: within the node's inputs and not left empty.
bool present(OrtKernelContext* context, size_t index, size_t count) {
  if (index >= count) return false;
  const OrtValue* value = nullptr;
  ORT_CHECK(g_api->KernelContext_GetInput(context, index, &value));
  return value != nullptr;
}

Tensor input(OrtKernelContext* context, size_t index, const char* name, bool ints) {
  const OrtValue* value = nullptr;
  ORT_CHECK(g_api->KernelContext_GetInput(context, index, &value));
  return tensor_of(value, name, ints);
}

float* output(OrtKernelContext* context, size_t index, const std::vector<int64_t>& shape) {
  OrtValue* value = nullptr;
  ORT_CHECK(g_api->KernelContext_GetOutput(context, index, shape.data(), shape.size(), &value));
  void* data = nullptr;
  ORT_CHECK(g_api->GetTensorMutableData(value, &data));
  return static_cast<float*>(data);
}

std::string dims(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

void expect_shape(const Tensor& t, const char* name, const std::vector<int64_t>& want) {
  if (t.shape != want)
    throw Failure{ORT_INVALID_ARGUMENT,
                  std::string("weight ") + name + " has shape " + dims(t.shape) + ", expected " +
                      dims(want)};
}

bool all_finite(const float* data, int64_t count) {
  bool ok = true;
  for (int64_t i = 0; i < count; ++i) ok &= std::isfinite(data[i]);
  return ok;
}

enum class Mode { kDynamic, kStateful, kRagged };

struct Kernel {
  Config c;
  Mode mode = Mode::kDynamic;

  // The rows the model chooses for `time` steps (export/signatures.py RowsTable.rows_for):
  // the smallest bucket that holds them.
  int64_t rows_for(int64_t time) const {
    size_t index = 0;
    while (index < c.longest.size() && time > c.longest[index]) ++index;
    if (index >= c.buckets.size())
      throw Failure{ORT_INVALID_ARGUMENT,
                    "an input of " + std::to_string(time) + " steps needs more than " +
                        std::to_string(c.buckets.back()) + " memory rows (the model's limit)"};
    return c.buckets[index];
  }

  // The rows a call runs with (RowsTable.resolve): the largest entry of memory_size when
  // positive, else rows_for(time).
  int64_t resolve_rows(const Tensor& memory_size, int64_t time) const {
    if (memory_size.size() < 1)
      throw Failure{ORT_INVALID_ARGUMENT, "memory_size must hold at least one value"};
    int64_t asked = memory_size.ints[0];
    for (int64_t i = 1; i < memory_size.size(); ++i)
      asked = std::max<int64_t>(asked, memory_size.ints[i]);
    if (asked <= 0) return rows_for(time);
    if (asked > c.max_rows)
      throw Failure{ORT_INVALID_ARGUMENT, "memory_size " + std::to_string(asked) +
                                              " is more than this model's limit of " +
                                              std::to_string(c.max_rows) + " rows"};
    return asked;
  }

  std::shared_ptr<const Packed> constant;  // the weights, packed at creation when constant

  // The weights (inputs from `first` on), their shapes checked against the attributes, packed.
  Packed pack(const Tensor* t) const {
    const int64_t u = c.units, rw = c.reads_width();
    const int64_t zw = c.lstm ? 4 * u : u;
    if (t[0].shape.size() != 2 || t[7].shape.size() != 1)
      throw Failure{ORT_INVALID_ARGUMENT, "the controller or output weights are not matrices"};
    Packed w;
    w.in = t[0].shape[0] - rw - (c.lstm ? u : 0);
    w.out = t[7].shape[0];
    if (w.in < 1) throw Failure{ORT_INVALID_ARGUMENT, "weight controller_kernel is too small"};
    if (t[9].shape.size() != 2 || t[9].shape[0] != c.heads() || t[9].shape[1] < 1)
      throw Failure{ORT_INVALID_ARGUMENT, "weight initial_weight_logits has shape " +
                                              dims(t[9].shape) + ", expected [heads, rows]"};
    expect_shape(t[0], kWeightNames[0], {t[0].shape[0], zw});
    expect_shape(t[1], kWeightNames[1], {zw});
    expect_shape(t[2], kWeightNames[2], {c.lstm ? u : 0});
    expect_shape(t[3], kWeightNames[3], {c.lstm ? u : 0});
    expect_shape(t[4], kWeightNames[4], {u, c.head_params()});
    expect_shape(t[5], kWeightNames[5], {c.head_params()});
    expect_shape(t[6], kWeightNames[6], {u + rw, w.out});
    expect_shape(t[8], kWeightNames[8], {c.read_heads, c.memory_width});
    if (t[10].size() != 0) expect_shape(t[10], kWeightNames[10], {t[9].shape[1], c.memory_width});
    const int64_t k = t[0].shape[0];
    w.zw = zw;
    w.zpad = round16(zw);
    w.pw = c.head_params();
    w.ppad = round16(w.pw);
    w.ow = u + rw;
    w.trained_rows = t[9].shape[1];
    w.controller_kernel = Blocked(t[0].data, k, zw, w.zpad);
    w.controller_bias = pad_columns(t[1].data, 1, zw, w.zpad);
    w.head_kernel = Blocked(t[4].data, u, w.pw, w.ppad);
    w.head_bias = pad_columns(t[5].data, 1, w.pw, w.ppad);
    w.output_t.resize(w.out * w.ow);
    for (int64_t q = 0; q < w.ow; ++q)
      for (int64_t o = 0; o < w.out; ++o) w.output_t[o * w.ow + q] = t[6].data[q * w.out + o];
    w.output_bias.assign(t[7].data, t[7].data + w.out);
    w.initial_h.assign(t[2].data, t[2].data + t[2].size());
    w.initial_c.assign(t[3].data, t[3].data + t[3].size());
    w.initial_reads.assign(t[8].data, t[8].data + t[8].size());
    w.initial_logits.assign(t[9].data, t[9].data + t[9].size());
    if (t[10].size() != 0) w.initial_memory.assign(t[10].data, t[10].data + t[10].size());
    return w;
  }

  // The packed weights of this call: the constant ones, else the inputs' packed into `local`.
  const Packed& weights(OrtKernelContext* context, size_t first, Packed* local) const {
    if (constant) return *constant;
    size_t count = 0;
    ORT_CHECK(g_api->KernelContext_GetInputCount(context, &count));
    Tensor t[kWeightCount];
    for (int i = 0; i < kWeightCount; ++i) {
      if (i == kOptionalWeight && !present(context, first + i, count)) {
        t[i].shape = {0};
        continue;
      }
      t[i] = input(context, first + i, kWeightNames[i], false);
    }
    *local = pack(t);
    return *local;
  }

  // At creation: when every weight is a constant initializer, pack them once.
  void pack_constants(const OrtKernelInfo* info) {
    const size_t first = mode == Mode::kStateful ? 4 : 2;
    size_t count = 0;
    ORT_CHECK(g_api->KernelInfo_GetInputCount(info, &count));
    Tensor t[kWeightCount];
    for (int i = 0; i < kWeightCount; ++i) {
      if (i == kOptionalWeight && first + i >= count) {
        t[i].shape = {0};
        continue;
      }
      int is_constant = 0;
      const OrtValue* value = nullptr;
      ORT_CHECK(g_api->KernelInfoGetConstantInput_tensor(info, first + i, &is_constant, &value));
      if (!is_constant) return;
      t[i] = tensor_of(value, kWeightNames[i], false);
    }
    constant = std::make_shared<const Packed>(pack(t));
  }

  void check_size(int64_t batch, int64_t rows, int64_t time) const {
    const int64_t attention = batch * time * c.heads() * rows;
    if (batch * rows * c.memory_width > kMaxFloats || attention > kMaxFloats)
      throw Failure{ORT_INVALID_ARGUMENT,
                    "batch " + std::to_string(batch) + " x " + std::to_string(time) +
                        " steps x " + std::to_string(rows) + " memory rows is too large: its "
                        "attention alone would take " + std::to_string(attention * 4 >> 20) +
                        " MiB (the limit is " + std::to_string(kMaxFloats * 4 >> 20) +
                        "); run fewer sequences at once"};
  }

  void compute(OrtKernelContext* context) const {
    if (mode == Mode::kRagged) return compute_ragged(context);
    const bool stateful = mode == Mode::kStateful;
    const Tensor x = input(context, 0, "inputs", false);
    const Tensor memory_size = input(context, 1, "memory_size", true);
    Packed local;
    const Packed& w = weights(context, stateful ? 4 : 2, &local);
    const int64_t in = w.in, out = w.out;
    if (x.shape.size() != 3)
      throw Failure{ORT_INVALID_ARGUMENT,
                    "inputs must be [batch, time, features], got " + dims(x.shape)};
    const int64_t batch = x.shape[0], time = x.shape[1];
    if (batch < 1) throw Failure{ORT_INVALID_ARGUMENT, "inputs hold an empty batch"};
    if (time < 1) throw Failure{ORT_INVALID_ARGUMENT, "inputs hold no time steps"};
    if (x.shape[2] != in)
      throw Failure{ORT_INVALID_ARGUMENT, "inputs have " + std::to_string(x.shape[2]) +
                                              " features per step; the model takes " +
                                              std::to_string(in)};
    if (!all_finite(x.data, x.size()))
      throw Failure{ORT_INVALID_ARGUMENT, "inputs hold NaN or infinity"};

    bool start = true;
    Tensor state;
    int64_t rows = 0;
    if (stateful) {
      const Tensor starts = input(context, 2, "sequence_start", true);
      if (starts.size() < 1)
        throw Failure{ORT_INVALID_ARGUMENT, "sequence_start must hold at least one value"};
      start = false;
      for (int64_t i = 0; i < starts.size(); ++i) start |= starts.ints[i] != 0;
      if (!start) {
        state = input(context, 3, "state", false);
        if (state.shape.size() != 2 || state.shape[0] != batch)
          throw Failure{ORT_INVALID_ARGUMENT, "state must be [" + std::to_string(batch) +
                                                  ", size] for this batch, got " +
                                                  dims(state.shape)};
        const int64_t extra = state.shape[1] - c.fixed_state();
        if (extra <= 0 || extra % c.per_row_state() != 0)
          throw Failure{ORT_INVALID_ARGUMENT, "state has " + std::to_string(state.shape[1]) +
                                                  " values per sequence, which no number of "
                                                  "memory rows gives"};
        rows = extra / c.per_row_state();
        if (rows > c.max_rows)
          throw Failure{ORT_INVALID_ARGUMENT, "state holds more than this model's limit of " +
                                                  std::to_string(c.max_rows) + " memory rows"};
        if (!all_finite(state.data, state.size()))
          throw Failure{ORT_INVALID_ARGUMENT, "state holds NaN or infinity"};
      }
    }
    if (start) rows = resolve_rows(memory_size, time);
    check_size(batch, rows, time);

    float* probabilities = output(context, 0, {batch, time, out});
    float* attention = output(context, 1, {batch, time, c.heads(), rows});
    const int64_t state_size = c.fixed_state() + rows * c.per_row_state();
    float* state_out = stateful ? output(context, 2, {batch, state_size}) : nullptr;
    // Sequences are independent: the batch runs as chunks of kChunk sequences, each over the
    // whole time loop, side by side on onnxruntime's intra-op threads when the session has
    // more than one (one thread: one after another, at no cost: the products block four
    // sequences at a time anyway, and a chunk's memory stays in cache).
    const int64_t chunks = (batch + kChunk - 1) / kChunk;
    Chunked job{this, &w, x.data, start ? nullptr : state.data, probabilities, attention,
                state_out, batch, time, rows, state_size, {}};
    if (chunks == 1) {  // on this thread: the common call (batch <= 8)
      job.run(0);
    } else {
      ORT_CHECK(g_api->KernelContext_ParallelFor(context, Chunked::call, chunks, 0, &job));
    }
    if (!job.failure.message.empty()) throw job.failure;
  }

  static constexpr int64_t kChunk = 8;

  // One chunk of the batch through every time step (run from onnxruntime's threads).
  struct Chunked {
    const Kernel* kernel;
    const Packed* w;
    const float* inputs;
    const float* state;  // null: a fresh start
    float* probabilities;
    float* attention;
    float* state_out;  // null: not stateful
    int64_t batch, time, rows, state_size;
    Failure failure;

    static void call(void* self, size_t index) {
      static_cast<Chunked*>(self)->run(static_cast<int64_t>(index));
    }

    void run(int64_t index) {
      const Config& c = kernel->c;
      const int64_t b0 = index * kChunk, g = std::min(kChunk, batch - b0);
      const int64_t in = w->in, out = w->out, hn = c.heads() * rows;
      try {
        Machine machine(c, *w, g, rows);
        if (state == nullptr) machine.start();
        else machine.load(state + b0 * state_size);
        for (int64_t step = 0; step < time; ++step)
          machine.step(inputs + b0 * time * in, time, step, probabilities + b0 * time * out,
                       attention + b0 * time * hn);
        if (state_out != nullptr) machine.save(state_out + b0 * state_size);
      } catch (const std::bad_alloc&) {  // never across onnxruntime's threads
        failure = Failure{ORT_FAIL, "out of memory"};
      }
    }
  };

  // Triton's ragged batch (export/triton.py RaggedModule): inputs [E] holds the sequences one
  // after another, item_shape [batch, 2] each one's (time steps, width). Each sequence runs
  // with rows_for(its time steps) rows; the sequences that share N run together, padded to
  // the longest among them (the model is causal: padding never changes earlier steps).
  void compute_ragged(OrtKernelContext* context) const {
    const Tensor x = input(context, 0, "inputs", false);
    const Tensor items = input(context, 1, "item_shape", true);
    Packed local;
    const Packed& w = weights(context, 2, &local);
    const int64_t in = w.in, out = w.out;
    if (x.shape.size() != 1)
      throw Failure{ORT_INVALID_ARGUMENT, "inputs must be flat, got " + dims(x.shape)};
    if (items.shape.size() != 2 || items.shape[1] != 2 || items.shape[0] < 1)
      throw Failure{ORT_INVALID_ARGUMENT,
                    "item_shape must be [batch >= 1, 2], got " + dims(items.shape)};
    const int64_t batch = items.shape[0];
    std::vector<int64_t> first(batch), lengths(batch), rows(batch);
    int64_t total = 0;
    for (int64_t b = 0; b < batch; ++b) {
      lengths[b] = items.ints[2 * b];
      if (lengths[b] < 1 || items.ints[2 * b + 1] != in)
        throw Failure{ORT_INVALID_ARGUMENT, "sequence " + std::to_string(b) + " has shape [" +
                                                std::to_string(lengths[b]) + ", " +
                                                std::to_string(items.ints[2 * b + 1]) +
                                                "]; the model takes [time >= 1, " +
                                                std::to_string(in) + "]"};
      first[b] = total;
      total += lengths[b];
      rows[b] = rows_for(lengths[b]);
    }
    if (total * in != x.shape[0])
      throw Failure{ORT_INVALID_ARGUMENT, "inputs hold " + std::to_string(x.shape[0]) +
                                              " values; item_shape describes " +
                                              std::to_string(total * in)};
    if (!all_finite(x.data, x.size()))
      throw Failure{ORT_INVALID_ARGUMENT, "inputs hold NaN or infinity"};
    float* probabilities = output(context, 0, {total, out});
    std::vector<bool> done(batch, false);
    for (int64_t b = 0; b < batch; ++b) {
      if (done[b]) continue;
      std::vector<int64_t> group;
      int64_t time = 0;
      for (int64_t o = b; o < batch; ++o)
        if (!done[o] && rows[o] == rows[b]) {
          group.push_back(o);
          time = std::max(time, lengths[o]);
          done[o] = true;
        }
      const int64_t g = static_cast<int64_t>(group.size());
      check_size(g, rows[b], time);
      Floats padded(g * time * in, 0.0f), p(g * time * out);
      for (int64_t i = 0; i < g; ++i)
        std::copy_n(x.data + first[group[i]] * in, lengths[group[i]] * in,
                    padded.data() + i * time * in);
      Machine machine(c, w, g, rows[b]);
      machine.start();
      for (int64_t step = 0; step < time; ++step)
        machine.step(padded.data(), time, step, p.data(), nullptr);
      for (int64_t i = 0; i < g; ++i)
        std::copy_n(p.data() + i * time * out, lengths[group[i]] * out,
                    probabilities + first[group[i]] * out);
    }
  }
};

int64_t attribute_int(const OrtKernelInfo* info, const char* name) {
  int64_t value = 0;
  ORT_CHECK(g_api->KernelInfoGetAttribute_int64(info, name, &value));
  return value;
}

float attribute_float(const OrtKernelInfo* info, const char* name) {
  float value = 0;
  ORT_CHECK(g_api->KernelInfoGetAttribute_float(info, name, &value));
  return value;
}

std::vector<int64_t> attribute_ints(const OrtKernelInfo* info, const char* name) {
  size_t size = 0;
  ORT_CHECK(g_api->KernelInfoGetAttributeArray_int64(info, name, nullptr, &size));
  std::vector<int64_t> values(size);
  if (size > 0) ORT_CHECK(g_api->KernelInfoGetAttributeArray_int64(info, name, values.data(), &size));
  return values;
}

OrtStatus* as_status(const Failure& failure) {
  return g_api->CreateStatus(failure.code, ("ntm_ops: " + failure.message).c_str());
}

struct Op : OrtCustomOp {
  const char* name;
  Mode mode;

  Op(const char* op_name, Mode op_mode) : OrtCustomOp{}, name(op_name), mode(op_mode) {
    version = kApiVersion;
    GetName = [](const OrtCustomOp* op) { return static_cast<const Op*>(op)->name; };
    GetExecutionProviderType = [](const OrtCustomOp*) -> const char* { return "CPUExecutionProvider"; };
    GetInputTypeCount = [](const OrtCustomOp* op) -> size_t {
      return (static_cast<const Op*>(op)->mode == Mode::kStateful ? 4 : 2) + kWeightCount;
    };
    GetInputType = [](const OrtCustomOp* op, size_t index) {
      const bool ints =
          index == 1 || (static_cast<const Op*>(op)->mode == Mode::kStateful && index == 2);
      return ints ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    };
    GetOutputTypeCount = [](const OrtCustomOp* op) -> size_t {
      switch (static_cast<const Op*>(op)->mode) {
        case Mode::kStateful: return size_t(3);
        case Mode::kRagged: return size_t(1);
        default: return size_t(2);
      }
    };
    GetOutputType = [](const OrtCustomOp*, size_t) { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; };
    GetInputCharacteristic = [](const OrtCustomOp* op, size_t index) {
      const size_t first = static_cast<const Op*>(op)->mode == Mode::kStateful ? 4 : 2;
      return index == first + kOptionalWeight ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
    };
    GetOutputCharacteristic = [](const OrtCustomOp*, size_t) { return INPUT_OUTPUT_REQUIRED; };
    GetInputMemoryType = [](const OrtCustomOp*, size_t) { return OrtMemTypeDefault; };
    GetVariadicInputMinArity = [](const OrtCustomOp*) { return 1; };
    GetVariadicInputHomogeneity = [](const OrtCustomOp*) { return 1; };
    GetVariadicOutputMinArity = [](const OrtCustomOp*) { return 1; };
    GetVariadicOutputHomogeneity = [](const OrtCustomOp*) { return 1; };
    GetStartVersion = [](const OrtCustomOp*) { return 1; };
    GetEndVersion = [](const OrtCustomOp*) { return (1 << 30); };
    KernelDestroy = [](void* kernel) { delete static_cast<Kernel*>(kernel); };
    CreateKernelV2 = [](const OrtCustomOp* op, const OrtApi*, const OrtKernelInfo* info,
                        void** kernel) -> OrtStatusPtr {
      try {
        auto* k = new Kernel();
        k->mode = static_cast<const Op*>(op)->mode;
        Config& c = k->c;
        try {
          c.memory_width = attribute_int(info, "memory_width");
          c.lstm = attribute_int(info, "lstm") != 0;
          c.units = attribute_int(info, "controller_size");
          c.read_heads = attribute_int(info, "read_heads");
          c.write_heads = attribute_int(info, "write_heads");
          c.shift_range = attribute_int(info, "shift_range");
          c.clip_value = attribute_float(info, "clip_value");
          c.memory_init = attribute_float(info, "memory_init");
          c.grow_margin = attribute_float(info, "grow_logit_margin");
          c.grow_power = attribute_float(info, "grow_strength_power");
          c.max_rows = attribute_int(info, "max_memory_size");
          c.buckets = attribute_ints(info, "buckets");
          c.longest = attribute_ints(info, "longest");
          k->pack_constants(info);
        } catch (...) {
          delete k;
          throw;
        }
        const bool sane = c.memory_width > 0 && c.memory_width <= 256 && c.units > 0 &&
                          c.read_heads > 0 && c.write_heads > 0 && c.shift_range >= 0 &&
                          c.shifts() <= 64 && c.max_rows > 0 && !c.buckets.empty() &&
                          c.longest.size() == c.buckets.size();
        if (!sane) {
          delete k;
          throw Failure{ORT_INVALID_ARGUMENT, "the node's attributes describe no valid model"};
        }
        *kernel = k;
        return nullptr;
      } catch (const Failure& failure) {
        return as_status(failure);
      } catch (const std::bad_alloc&) {
        return as_status({ORT_FAIL, "out of memory"});
      }
    };
    KernelComputeV2 = [](void* kernel, OrtKernelContext* context) -> OrtStatusPtr {
      try {
        static_cast<const Kernel*>(kernel)->compute(context);
        return nullptr;
      } catch (const Failure& failure) {
        return as_status(failure);
      } catch (const std::bad_alloc&) {
        return as_status({ORT_FAIL, "out of memory"});
      }
    };
  }
};

const Op kNTM("NTM", Mode::kDynamic);
const Op kNTMSequence("NTMSequence", Mode::kStateful);
const Op kNTMRagged("NTMRagged", Mode::kRagged);

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  g_api = api_base->GetApi(kApiVersion);
  if (g_api == nullptr) return nullptr;  // cannot even report: onnxruntime older than 1.20
  OrtCustomOpDomain* domain = nullptr;
  if (OrtStatus* status = g_api->CreateCustomOpDomain(kDomain, &domain)) return status;
  for (const Op* op : {&kNTM, &kNTMSequence, &kNTMRagged})
    if (OrtStatus* status = g_api->CustomOpDomain_Add(domain, op)) return status;
  // The domain must outlive every session that uses it: it is kept for the process's life.
  return g_api->AddCustomOpDomain(options, domain);
}

// The version of the op's contract, for the Python side to check what it loaded.
extern "C" __attribute__((visibility("default"))) int ntm_ops_version() { return 1; }
