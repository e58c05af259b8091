// NMS on CUDA. Boxes are sorted into segments (the whole input for nms, one per idx for
// batched_nms, one per class for multiclass_nms), each in decreasing score. One launch builds
// the pairwise "suppresses" bitmask of every segment, a second scans every segment with one
// warp on the GPU: no host round trip per box, and all classes in one launch.
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../box_math.h"
#include "../op_checks.h"
#include "cuda_utils.cuh"

namespace wsis {
namespace {

constexpr int kWord = 64;  // boxes per mask word

template <typename T>
__global__ void nms_mask_kernel(const T* __restrict__ boxes, const int64_t* __restrict__ seg_start, int64_t segments,
                                int64_t words, T thr, uint64_t* __restrict__ mask) {
  const int64_t rb = blockIdx.y, cb = blockIdx.x;
  if (cb < rb) return;  // the scan only reads words at or right of the diagonal
  __shared__ T col[kWord][5];
  for (int64_t seg = blockIdx.z; seg < segments; seg += gridDim.z) {
    const int64_t start = seg_start[seg], n = seg_start[seg + 1] - start;
    if (cb * kWord >= n) continue;  // uniform over the block
    const int64_t rows = min_(n - rb * kWord, static_cast<int64_t>(kWord));
    const int64_t cols = min_(n - cb * kWord, static_cast<int64_t>(kWord));
    __syncthreads();  // the previous segment's readers are done with `col`
    if (threadIdx.x < cols) {
      const T* p = boxes + (start + cb * kWord + threadIdx.x) * 4;
      col[threadIdx.x][0] = p[0], col[threadIdx.x][1] = p[1], col[threadIdx.x][2] = p[2], col[threadIdx.x][3] = p[3];
      col[threadIdx.x][4] = (p[2] - p[0]) * (p[3] - p[1]);
    }
    __syncthreads();
    if (threadIdx.x < rows) {
      const int64_t i = rb * kWord + threadIdx.x;
      const T* p = boxes + (start + i) * 4;
      const T area = (p[2] - p[0]) * (p[3] - p[1]);
      uint64_t bits = 0;
      for (int64_t j = (rb == cb) ? threadIdx.x + 1 : 0; j < cols; ++j) {
        if (box_iou_one(p[0], p[1], p[2], p[3], area, col[j][0], col[j][1], col[j][2], col[j][3], col[j][4]) > thr)
          bits |= 1ULL << j;
      }
      mask[(start + i) * words + cb] = bits;
    }
  }
}

// One warp per segment walks its boxes in score order, keeping those not yet removed.
__global__ void nms_scan_kernel(const uint64_t* __restrict__ mask, const int64_t* __restrict__ seg_start,
                                int64_t words, int64_t limit, bool* __restrict__ keep) {
  extern __shared__ uint64_t removed[];
  const int64_t start = seg_start[blockIdx.x], n = seg_start[blockIdx.x + 1] - start;
  const int64_t seg_words = (n + kWord - 1) / kWord;
  for (int64_t w = threadIdx.x; w < seg_words; w += warpSize) removed[w] = 0;
  __syncwarp();
  int64_t kept = 0;
  for (int64_t i = 0; i < n && kept < limit; ++i) {
    const int64_t word = i / kWord;
    if ((removed[word] >> (i % kWord)) & 1ULL) continue;  // same decision on every lane
    if (threadIdx.x == 0) keep[start + i] = true;
    ++kept;
    const uint64_t* row = mask + (start + i) * words;
    for (int64_t w = word + threadIdx.x; w < seg_words; w += warpSize) removed[w] |= row[w];
    __syncwarp();
  }
}

// keep flags of boxes sorted into segments [starts[s], starts[s+1]), each by decreasing score.
at::Tensor segmented_nms(const at::Tensor& sorted_boxes, const std::vector<int64_t>& starts, double iou_threshold,
                         int64_t limit) {
  const int64_t total = starts.back(), segments = static_cast<int64_t>(starts.size()) - 1;
  auto keep = at::zeros({total}, sorted_boxes.options().dtype(at::kBool));
  if (total == 0 || limit == 0) return keep;
  int64_t longest = 0;
  for (int64_t s = 0; s < segments; ++s) longest = std::max(longest, starts[s + 1] - starts[s]);
  const int64_t words = (longest + kWord - 1) / kWord;
  TORCH_CHECK(words * 8 <= 48 * 1024 && words <= 65535, "nms on CUDA handles at most ", 48 * 1024 / 8 * kWord,
              " boxes per class, got ", longest);
  auto seg = at::tensor(starts, at::TensorOptions().dtype(at::kLong)).to(sorted_boxes.device());
  auto mask = at::empty({total, words}, sorted_boxes.options().dtype(at::kLong));
  auto stream = at::cuda::getCurrentCUDAStream();
  dim3 grid(words, words, std::min<int64_t>(segments, 65535));
  AT_DISPATCH_FLOATING_TYPES(sorted_boxes.scalar_type(), "nms_mask_cuda", [&] {
    nms_mask_kernel<scalar_t><<<grid, kWord, 0, stream>>>(
        sorted_boxes.data_ptr<scalar_t>(), seg.data_ptr<int64_t>(), segments, words,
        threshold_in<scalar_t>(iou_threshold), reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>()));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  nms_scan_kernel<<<segments, 32, words * sizeof(uint64_t), stream>>>(
      reinterpret_cast<const uint64_t*>(mask.data_ptr<int64_t>()), seg.data_ptr<int64_t>(), words, limit,
      keep.data_ptr<bool>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return keep;
}

// segmented_nms where a NaN score is never kept and suppresses nothing, without a host sync: its
// box becomes NaN (a NaN IoU never passes the threshold) and its keep flag is cleared. Only for
// limit >= the segment's length: the scan would count a NaN-scored box as kept.
at::Tensor segmented_nms_skipping_nan(const at::Tensor& sorted_boxes, const at::Tensor& sorted_scores,
                                      const std::vector<int64_t>& starts, double iou_threshold) {
  auto nan = sorted_scores.isnan();
  auto boxes = at::where(nan.unsqueeze(1), at::Scalar(std::numeric_limits<double>::quiet_NaN()), sorted_boxes);
  return segmented_nms(boxes.contiguous(), starts, iou_threshold, sorted_boxes.size(0)).logical_and_(nan.logical_not());
}

at::Tensor by_decreasing_score(const at::Tensor& indices, const at::Tensor& scores) {
  auto ascending = std::get<0>(at::sort(indices));  // ties: lower index first
  return ascending.index_select(0, std::get<1>(at::sort(scores.index_select(0, ascending), true, 0, true)));
}

std::vector<int64_t> starts_from_counts(const at::Tensor& counts) {
  auto c = counts.to(at::kCPU, at::kLong).contiguous();
  std::vector<int64_t> starts{0};
  for (int64_t i = 0; i < c.numel(); ++i) starts.push_back(starts.back() + c.data_ptr<int64_t>()[i]);
  return starts;
}

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  check_nms_args(boxes, scores);
  at::cuda::CUDAGuard guard(boxes.device());
  auto order = std::get<1>(at::sort(scores, true, 0, true));
  auto keep = segmented_nms_skipping_nan(boxes.index_select(0, order), scores.index_select(0, order),
                                         {0, boxes.size(0)}, iou_threshold);
  return order.masked_select(keep);
}

at::Tensor batched_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                            double iou_threshold) {
  check_batched_nms_args(boxes, scores, idxs);
  at::cuda::CUDAGuard guard(boxes.device());
  if (boxes.size(0) == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  auto order = std::get<1>(at::sort(scores, true, 0, true));
  auto ids = idxs.to(at::kLong).index_select(0, order);
  auto by_id = std::get<1>(at::sort(ids, true, 0, false));  // stable: score order within an id
  auto perm = order.index_select(0, by_id);
  auto counts = std::get<2>(at::unique_consecutive(ids.index_select(0, by_id), false, true));
  auto keep = segmented_nms_skipping_nan(boxes.index_select(0, perm), scores.index_select(0, perm),
                                         starts_from_counts(counts), iou_threshold);
  return by_decreasing_score(perm.masked_select(keep), scores);
}

std::tuple<at::Tensor, at::Tensor> multiclass_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                                                       double iou_threshold, double score_threshold,
                                                       int64_t max_per_class) {
  const bool per_class = check_multiclass_nms_args(boxes, scores);
  const int64_t R = scores.size(0), C = scores.size(1);
  at::cuda::CUDAGuard guard(boxes.device());
  auto flat_scores = scores.reshape({-1});
  auto cand = (flat_scores > score_threshold).nonzero().squeeze(1);
  if (cand.numel() == 0) return {cand, cand.clone()};
  cand = cand.index_select(0, std::get<1>(at::sort(flat_scores.index_select(0, cand), true, 0, true)));
  auto by_class = std::get<1>(at::sort(cand.remainder(C), true, 0, false));
  cand = cand.index_select(0, by_class);  // grouped by class, each by decreasing score
  auto counts = at::bincount(cand.remainder(C), {}, C);
  auto cand_boxes = per_class ? boxes.reshape({-1, 4}).index_select(0, cand)
                              : boxes.index_select(0, at::div(cand, C, "floor"));
  auto keep = segmented_nms(cand_boxes.contiguous(), starts_from_counts(counts), iou_threshold,
                            max_per_class < 0 ? R : max_per_class);
  auto kept = by_decreasing_score(cand.masked_select(keep), flat_scores);
  return {at::div(kept, C, "floor"), kept.remainder(C)};
}

}  // namespace

TORCH_LIBRARY_IMPL(wsis, CUDA, m) {
  m.impl("nms", &nms_cuda);
  m.impl("batched_nms", &batched_nms_cuda);
  m.impl("multiclass_nms", &multiclass_nms_cuda);
}

}  // namespace wsis
