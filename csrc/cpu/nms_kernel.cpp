// nms, batched_nms and multiclass_nms share one greedy pass over score-sorted boxes.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "../box_math.h"
#include "../op_checks.h"

namespace wsis {
namespace {

// Boxes already sorted by decreasing score, as structure-of-arrays.
template <typename T>
struct SortedBoxes {
  std::vector<T> x1, y1, x2, y2, area;
  explicit SortedBoxes(size_t n) : x1(n), y1(n), x2(n), y2(n), area(n) {}
  void set(size_t i, const T* b) {
    x1[i] = b[0], y1[i] = b[1], x2[i] = b[2], y2[i] = b[3];
    area[i] = (b[2] - b[0]) * (b[3] - b[1]);
  }
};

// Greedy NMS; returns the kept positions (into the sorted order), at most `limit` of them.
template <typename T>
std::vector<int64_t> greedy_nms(const SortedBoxes<T>& s, double iou_threshold, int64_t limit) {
  const int64_t n = static_cast<int64_t>(s.x1.size());
  const T thr = threshold_in<T>(iou_threshold);
  std::vector<int32_t> suppressed(n, 0);  // int32 like float lanes: the loop vectorises
  std::vector<int64_t> keep;
  const T* __restrict__ x1 = s.x1.data();
  const T* __restrict__ y1 = s.y1.data();
  const T* __restrict__ x2 = s.x2.data();
  const T* __restrict__ y2 = s.y2.data();
  const T* __restrict__ ar = s.area.data();
  int32_t* __restrict__ sup = suppressed.data();
  for (int64_t i = 0; i < n && static_cast<int64_t>(keep.size()) < limit; ++i) {
    if (sup[i]) continue;
    keep.push_back(i);
    const T ix1 = x1[i], iy1 = y1[i], ix2 = x2[i], iy2 = y2[i], iarea = ar[i];
    for (int64_t j = i + 1; j < n; ++j) {
      sup[j] |= static_cast<int32_t>(box_iou_one(ix1, iy1, ix2, iy2, iarea, x1[j], y1[j], x2[j], y2[j], ar[j]) > thr);
    }
  }
  return keep;
}

// Indices of `scores` by decreasing score, ties by increasing index (stable). NaN scores are
// left out: they are never kept and suppress nothing (and would break the sort's ordering).
template <typename T>
std::vector<int64_t> order_by_score(const T* scores, int64_t n) {
  std::vector<int64_t> order;
  order.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isnan(scores[i])) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(), [scores](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  return order;
}

at::Tensor nms_cpu(const at::Tensor& boxes_, const at::Tensor& scores_, double iou_threshold) {
  check_nms_args(boxes_, scores_);
  auto boxes = boxes_.contiguous();
  auto scores = scores_.contiguous();
  const int64_t n = boxes.size(0);
  std::vector<int64_t> kept;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms_cpu", [&] {
    const scalar_t* b = boxes.data_ptr<scalar_t>();
    auto order = order_by_score(scores.data_ptr<scalar_t>(), n);
    const int64_t m = static_cast<int64_t>(order.size());
    SortedBoxes<scalar_t> s(m);
    for (int64_t i = 0; i < m; ++i) s.set(i, b + order[i] * 4);
    for (int64_t pos : greedy_nms(s, iou_threshold, m)) kept.push_back(order[pos]);
  });
  return at::tensor(kept, boxes.options().dtype(at::kLong));
}

at::Tensor batched_nms_cpu(const at::Tensor& boxes_, const at::Tensor& scores_, const at::Tensor& idxs_,
                           double iou_threshold) {
  check_batched_nms_args(boxes_, scores_, idxs_);
  auto boxes = boxes_.contiguous();
  auto scores = scores_.contiguous();
  auto idxs = idxs_.to(at::kLong).contiguous();
  std::vector<uint8_t> kept_mask;
  std::vector<int64_t> order;
  int64_t n = 0;  // boxes with a score that is not NaN
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "batched_nms_cpu", [&] {
    const scalar_t* b = boxes.data_ptr<scalar_t>();
    const int64_t* id = idxs.data_ptr<int64_t>();
    order = order_by_score(scores.data_ptr<scalar_t>(), boxes.size(0));
    n = static_cast<int64_t>(order.size());
    kept_mask.assign(n, 0);
    // Positions in score order, grouped by idx; each group stays in score order.
    std::vector<int64_t> pos(n);
    std::iota(pos.begin(), pos.end(), 0);
    std::stable_sort(pos.begin(), pos.end(), [&](int64_t p, int64_t q) { return id[order[p]] < id[order[q]]; });
    std::vector<int64_t> group_start{0};
    for (int64_t i = 1; i <= n; ++i) {
      if (i == n || id[order[pos[i]]] != id[order[pos[i - 1]]]) group_start.push_back(i);
    }
    const int64_t groups = static_cast<int64_t>(group_start.size()) - 1;
    at::parallel_for(0, groups, 1, [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t lo = group_start[g], len = group_start[g + 1] - lo;
        SortedBoxes<scalar_t> s(len);
        for (int64_t i = 0; i < len; ++i) s.set(i, b + order[pos[lo + i]] * 4);
        for (int64_t k : greedy_nms(s, iou_threshold, len)) kept_mask[pos[lo + k]] = 1;
      }
    });
  });
  std::vector<int64_t> kept;
  for (int64_t p = 0; p < n; ++p) {
    if (kept_mask[p]) kept.push_back(order[p]);
  }
  return at::tensor(kept, boxes.options().dtype(at::kLong));
}

std::tuple<at::Tensor, at::Tensor> multiclass_nms_cpu(const at::Tensor& boxes_, const at::Tensor& scores_,
                                                      double iou_threshold, double score_threshold,
                                                      int64_t max_per_class) {
  const bool per_class = check_multiclass_nms_args(boxes_, scores_);
  const int64_t R = scores_.size(0), C = scores_.size(1);
  auto boxes = boxes_.contiguous();
  auto scores = scores_.contiguous();
  const int64_t limit = max_per_class < 0 ? R : max_per_class;
  std::vector<std::vector<int64_t>> kept_per_class(C);  // flat indices r * C + c
  std::vector<int64_t> flat;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "multiclass_nms_cpu", [&] {
    const scalar_t* b = boxes.data_ptr<scalar_t>();
    const scalar_t* sc = scores.data_ptr<scalar_t>();
    at::parallel_for(0, C, 1, [&](int64_t c0, int64_t c1) {
      std::vector<scalar_t> cls_scores;
      std::vector<int64_t> rows;
      for (int64_t c = c0; c < c1; ++c) {
        cls_scores.clear();
        rows.clear();
        for (int64_t r = 0; r < R; ++r) {
          scalar_t v = sc[r * C + c];
          if (static_cast<double>(v) > score_threshold) {
            rows.push_back(r);
            cls_scores.push_back(v);
          }
        }
        auto order = order_by_score(cls_scores.data(), static_cast<int64_t>(rows.size()));
        SortedBoxes<scalar_t> s(rows.size());
        for (size_t i = 0; i < rows.size(); ++i) {
          const int64_t r = rows[order[i]];
          s.set(i, b + (per_class ? (r * C + c) : r) * 4);
        }
        for (int64_t k : greedy_nms(s, iou_threshold, limit)) kept_per_class[c].push_back(rows[order[k]] * C + c);
      }
    });
    for (auto& v : kept_per_class) flat.insert(flat.end(), v.begin(), v.end());
    // Decreasing score; ties by flat index, as batched_nms over the flattened (row, class) pairs.
    std::sort(flat.begin(), flat.end(), [sc](int64_t p, int64_t q) { return sc[p] > sc[q] || (sc[p] == sc[q] && p < q); });
  });
  auto flat_t = at::tensor(flat, boxes.options().dtype(at::kLong));
  return {at::div(flat_t, C, "floor"), at::remainder(flat_t, C)};
}

}  // namespace

TORCH_LIBRARY_IMPL(wsis, CPU, m) {
  m.impl("nms", &nms_cpu);
  m.impl("batched_nms", &batched_nms_cpu);
  m.impl("multiclass_nms", &multiclass_nms_cpu);
}

}  // namespace wsis
