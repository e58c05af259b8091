// OICR refinement targets (docs/DESIGN.md §2): one seed per positive class, then every proposal
// takes the label and score of the seed it overlaps most.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../box_math.h"
#include "../op_checks.h"

namespace wsis {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> oicr_assign_cpu(const at::Tensor& boxes_,
                                                                           const at::Tensor& scores_,
                                                                           const at::Tensor& image_labels_,
                                                                           double fg_thresh, double bg_thresh) {
  check_oicr_assign_args(boxes_, scores_, image_labels_);
  const int64_t R = boxes_.size(0), C = scores_.size(1);
  auto labels_f = image_labels_.to(at::kDouble).contiguous();
  const double* lab = labels_f.data_ptr<double>();
  std::vector<int64_t> classes;
  for (int64_t c = 0; c < C; ++c) {
    if (lab[c] == 1.0) classes.push_back(c);
  }
  TORCH_CHECK(!classes.empty(), "image_labels has no positive class (no entry equal to 1)");

  auto boxes = boxes_.contiguous();
  auto scores = scores_.contiguous();
  auto labels = at::empty({R}, boxes.options().dtype(at::kLong));
  auto weights = at::empty({R}, scores.options());
  auto seed_index = at::empty({R}, boxes.options().dtype(at::kLong));
  auto max_iou = at::empty({R}, boxes.options());
  if (R == 0) return {labels, weights, seed_index, max_iou};

  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "oicr_assign_cpu", [&] {
    const scalar_t* b = boxes.data_ptr<scalar_t>();
    const scalar_t* s = scores.data_ptr<scalar_t>();
    const int64_t P = static_cast<int64_t>(classes.size());
    // One sweep over the score rows keeps, per positive class, its P best rows (ties: lower
    // row first). A class loses at most P-1 of them to earlier classes, so the seeds below
    // are exactly the sequential "argmax over rows not yet taken".
    const int64_t depth = std::min(P, R);
    std::vector<int64_t> top(P * depth, -1);
    // cut[k]: the score a row must beat to enter class k's full top list (-inf until full).
    std::vector<scalar_t> cut(P, -std::numeric_limits<scalar_t>::infinity());
    std::vector<uint8_t> full(P, 0);
    for (int64_t r = 0; r < R; ++r) {
      const scalar_t* row = s + r * C;
      for (int64_t k = 0; k < P; ++k) {
        const scalar_t v = row[classes[k]];
        if (full[k] && !(v > cut[k])) continue;
        int64_t* t = top.data() + k * depth;
        int64_t pos = depth - 1;
        while (pos > 0 && (t[pos - 1] < 0 || v > s[t[pos - 1] * C + classes[k]])) {
          t[pos] = t[pos - 1];
          --pos;
        }
        t[pos] = r;
        full[k] = t[depth - 1] >= 0;
        if (full[k]) cut[k] = s[t[depth - 1] * C + classes[k]];
      }
    }
    std::vector<int64_t> seed_row, seed_cls;
    for (int64_t k = 0; k < P; ++k) {
      for (int64_t d = 0; d < depth; ++d) {
        const int64_t r = top[k * depth + d];
        if (r >= 0 && std::find(seed_row.begin(), seed_row.end(), r) == seed_row.end()) {
          seed_row.push_back(r);
          seed_cls.push_back(classes[k]);
          break;
        }
      }
    }
    // Best seed per proposal: one vectorisable pass per seed, strict > so ties keep the
    // earlier class; a NaN IoU (two empty boxes) counts as 0.
    std::vector<scalar_t> best_iou(R, scalar_t(0));
    std::vector<int32_t> best_seed(R, 0);
    std::vector<scalar_t> area(R);
    for (int64_t r = 0; r < R; ++r) area[r] = (b[r * 4 + 2] - b[r * 4]) * (b[r * 4 + 3] - b[r * 4 + 1]);
    for (int64_t k = 0; k < static_cast<int64_t>(seed_row.size()); ++k) {
      const scalar_t* bs = b + seed_row[k] * 4;
      const scalar_t sx1 = bs[0], sy1 = bs[1], sx2 = bs[2], sy2 = bs[3], sarea = area[seed_row[k]];
      scalar_t* __restrict__ bi = best_iou.data();
      int32_t* __restrict__ bk = best_seed.data();
      const scalar_t* __restrict__ bb = b;
      const scalar_t* __restrict__ ar = area.data();
      const int32_t kk = static_cast<int32_t>(k);
      for (int64_t r = 0; r < R; ++r) {
        const scalar_t v = box_iou_one(bb[r * 4], bb[r * 4 + 1], bb[r * 4 + 2], bb[r * 4 + 3], ar[r], sx1, sy1, sx2, sy2, sarea);
        const bool better = v > bi[r];
        bi[r] = better ? v : bi[r];
        bk[r] = better ? kk : bk[r];
      }
    }
    int64_t* lo = labels.data_ptr<int64_t>();
    scalar_t* wo = weights.data_ptr<scalar_t>();
    int64_t* so = seed_index.data_ptr<int64_t>();
    scalar_t* io = max_iou.data_ptr<scalar_t>();
    for (int64_t r = 0; r < R; ++r) {
      const int64_t j = best_seed[r], row = seed_row[j], cls = seed_cls[j];
      const double v = static_cast<double>(best_iou[r]);
      lo[r] = v >= fg_thresh ? cls + 1 : 0;
      wo[r] = v < bg_thresh ? scalar_t(0) : s[row * C + cls];
      so[r] = row;
      io[r] = best_iou[r];
    }
  });
  return {labels, weights, seed_index, max_iou};
}

}  // namespace

TORCH_LIBRARY_IMPL(wsis, CPU, m) { m.impl("oicr_assign", &oicr_assign_cpu); }

}  // namespace wsis
