// OICR refinement targets (DESIGN §2): one seed per positive class, then every proposal
// takes the label and score of the seed it overlaps most.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../box_math.h"
#include "../checks.h"

namespace wsis {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> oicr_assign_cpu(const at::Tensor& boxes_,
                                                                           const at::Tensor& scores_,
                                                                           const at::Tensor& image_labels_,
                                                                           double fg_thresh, double bg_thresh) {
  check_boxes(boxes_, "boxes");
  TORCH_CHECK(scores_.dim() == 2 && scores_.size(0) == boxes_.size(0), "scores must have shape [",
              boxes_.size(0), ", C], got ", scores_.sizes());
  TORCH_CHECK(image_labels_.dim() == 1 && image_labels_.size(0) == scores_.size(1), "image_labels must have shape [",
              scores_.size(1), "], got ", image_labels_.sizes());
  check_same_dtype(boxes_, "boxes", scores_, "scores");
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
    std::vector<uint8_t> taken(R, 0);
    std::vector<int64_t> seed_row, seed_cls;
    for (int64_t c : classes) {
      int64_t best = -1;
      for (int64_t r = 0; r < R; ++r) {
        if (!taken[r] && (best < 0 || s[r * C + c] > s[best * C + c])) best = r;
      }
      if (best < 0) break;  // fewer proposals than positive classes
      taken[best] = 1;
      seed_row.push_back(best);
      seed_cls.push_back(c);
    }
    const int64_t S = static_cast<int64_t>(seed_row.size());
    int64_t* lo = labels.data_ptr<int64_t>();
    scalar_t* wo = weights.data_ptr<scalar_t>();
    int64_t* so = seed_index.data_ptr<int64_t>();
    scalar_t* io = max_iou.data_ptr<scalar_t>();
    at::parallel_for(0, R, 2048, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* br = b + r * 4;
        const scalar_t area_r = (br[2] - br[0]) * (br[3] - br[1]);
        int64_t j = 0;
        scalar_t best_iou = 0;  // a NaN IoU (two empty boxes) counts as 0
        for (int64_t k = 0; k < S; ++k) {
          const scalar_t* bs = b + seed_row[k] * 4;
          const scalar_t area_s = (bs[2] - bs[0]) * (bs[3] - bs[1]);
          scalar_t v = box_iou_one(br[0], br[1], br[2], br[3], area_r, bs[0], bs[1], bs[2], bs[3], area_s);
          if (v > best_iou) best_iou = v, j = k;  // strict: ties keep the earlier class
        }
        lo[r] = static_cast<double>(best_iou) >= fg_thresh ? seed_cls[j] + 1 : 0;
        wo[r] = static_cast<double>(best_iou) < bg_thresh ? scalar_t(0) : s[seed_row[j] * C + seed_cls[j]];
        so[r] = seed_row[j];
        io[r] = best_iou;
      }
    });
  });
  return {labels, weights, seed_index, max_iou};
}

}  // namespace

TORCH_LIBRARY_IMPL(wsis, CPU, m) { m.impl("oicr_assign", &oicr_assign_cpu); }

}  // namespace wsis
