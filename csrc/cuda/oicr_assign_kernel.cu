// oicr_assign on CUDA in one launch of one block: a block-wide argmax per positive class
// (in class order, skipping rows already taken as seeds), then every proposal against the seeds.
#include <torch/library.h>

#include "../box_math.h"
#include "../op_checks.h"
#include "cuda_utils.cuh"

namespace wsis {
namespace {

constexpr int kAssignThreads = 1024;

// (v, i) beats (w, j): a valid row with a higher score, ties to the lower row.
template <typename T>
__device__ bool beats(T v, int64_t i, T w, int64_t j) {
  return i >= 0 && (j < 0 || v > w || (v == w && i < j));
}

template <typename T>
__global__ void oicr_assign_kernel(const T* __restrict__ boxes, const T* __restrict__ scores,
                                   const double* __restrict__ image_labels, int64_t R, int64_t C, double fg_thresh,
                                   double bg_thresh, bool* __restrict__ taken, int64_t* __restrict__ labels,
                                   T* __restrict__ weights, int64_t* __restrict__ seed_index,
                                   T* __restrict__ max_iou) {
  extern __shared__ int64_t seeds[];  // [2 * C]: row, class
  __shared__ T warp_v[kAssignThreads / 32];
  __shared__ int64_t warp_i[kAssignThreads / 32];
  __shared__ int num_seeds;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  if (tid == 0) num_seeds = 0;
  __syncthreads();
  for (int64_t c = 0; c < C; ++c) {
    if (image_labels[c] != 1.0) continue;  // uniform over the block
    T bv = 0;
    int64_t bi = -1;
    for (int64_t r = tid; r < R; r += blockDim.x) {
      const T v = scores[r * C + c];
      if (!taken[r] && beats(v, r, bv, bi)) bv = v, bi = r;
    }
    for (int off = 16; off > 0; off /= 2) {
      const T ov = __shfl_down_sync(0xffffffff, bv, off);
      const int64_t oi = __shfl_down_sync(0xffffffff, bi, off);
      if (beats(ov, oi, bv, bi)) bv = ov, bi = oi;
    }
    if (lane == 0) warp_v[warp] = bv, warp_i[warp] = bi;
    __syncthreads();
    if (tid == 0) {
      for (int w = 1; w < blockDim.x / 32; ++w)
        if (beats(warp_v[w], warp_i[w], bv, bi)) bv = warp_v[w], bi = warp_i[w];
      if (bi >= 0) {
        taken[bi] = true;
        seeds[2 * num_seeds] = bi;
        seeds[2 * num_seeds + 1] = c;
        ++num_seeds;
      }
    }
    __syncthreads();
  }
  for (int64_t r = tid; r < R; r += blockDim.x) {
    const T* b = boxes + r * 4;
    const T area = (b[2] - b[0]) * (b[3] - b[1]);
    T best = 0;  // a NaN IoU (two empty boxes) counts as 0
    int j = 0;
    for (int k = 0; k < num_seeds; ++k) {
      const T* s = boxes + seeds[2 * k] * 4;
      const T v = box_iou_one(b[0], b[1], b[2], b[3], area, s[0], s[1], s[2], s[3], (s[2] - s[0]) * (s[3] - s[1]));
      if (v > best) best = v, j = k;  // strict: ties keep the earlier class
    }
    const int64_t row = seeds[2 * j], cls = seeds[2 * j + 1];
    labels[r] = static_cast<double>(best) >= fg_thresh ? cls + 1 : 0;
    weights[r] = static_cast<double>(best) < bg_thresh ? T(0) : scores[row * C + cls];
    seed_index[r] = row;
    max_iou[r] = best;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> oicr_assign_cuda(const at::Tensor& boxes_,
                                                                            const at::Tensor& scores_,
                                                                            const at::Tensor& image_labels_,
                                                                            double fg_thresh, double bg_thresh) {
  check_oicr_assign_args(boxes_, scores_, image_labels_);
  at::cuda::CUDAGuard guard(boxes_.device());
  auto image_labels = image_labels_.to(at::kDouble).contiguous();
  TORCH_CHECK(image_labels.eq(1).any().item<bool>(), "image_labels has no positive class (no entry equal to 1)");
  const int64_t R = boxes_.size(0), C = scores_.size(1);
  // The seeds live in shared memory: two int64 per class.
  TORCH_CHECK(C <= 3072, "oicr_assign on CUDA takes at most 3072 classes, got ", C);
  auto boxes = boxes_.contiguous();
  auto scores = scores_.contiguous();
  auto labels = at::empty({R}, boxes.options().dtype(at::kLong));
  auto weights = at::empty({R}, scores.options());
  auto seed_index = at::empty({R}, boxes.options().dtype(at::kLong));
  auto max_iou = at::empty({R}, boxes.options());
  if (R == 0) return {labels, weights, seed_index, max_iou};
  auto taken = at::zeros({R}, boxes.options().dtype(at::kBool));
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "oicr_assign_cuda", [&] {
    oicr_assign_kernel<scalar_t><<<1, kAssignThreads, 2 * C * sizeof(int64_t), at::cuda::getCurrentCUDAStream()>>>(
        boxes.data_ptr<scalar_t>(), scores.data_ptr<scalar_t>(), image_labels.data_ptr<double>(), R, C, fg_thresh,
        bg_thresh, taken.data_ptr<bool>(), labels.data_ptr<int64_t>(), weights.data_ptr<scalar_t>(),
        seed_index.data_ptr<int64_t>(), max_iou.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {labels, weights, seed_index, max_iou};
}

}  // namespace

TORCH_LIBRARY_IMPL(wsis, CUDA, m) { m.impl("oicr_assign", &oicr_assign_cuda); }

}  // namespace wsis
