// The IMG module's ops on CUDA: weighted GAP (one warp per map, weights in shared memory) and
// the fused Eq.1 pseudo masks (one block per map: min/max, normalise, average, threshold).
#include <torch/library.h>

#include <cfloat>

#include "../box_math.h"
#include "../op_checks.h"
#include "cuda_utils.cuh"

namespace wsis {
namespace {

template <typename T>
__device__ void load_gap_weights(T* w, int H, int W, double sigma) {
  const double norm = gap_norm(H, W, sigma);
  for (int p = threadIdx.x; p < H * W; p += blockDim.x) w[p] = static_cast<T>(gap_weight(p / W, p % W, H, W, sigma, norm));
  __syncthreads();
}

template <typename T>
__global__ void weighted_gap_kernel(const T* __restrict__ x, int64_t maps, int H, int W, double sigma,
                                    T* __restrict__ out) {
  extern __shared__ unsigned char smem[];
  T* w = reinterpret_cast<T*>(smem);
  load_gap_weights(w, H, W, sigma);
  const int P = H * W, lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / 32;
  for (int64_t m = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; m < maps; m += warps) {
    T acc = 0;
    for (int p = lane; p < P; p += 32) acc += x[m * P + p] * w[p];
    for (int off = 16; off > 0; off /= 2) acc += __shfl_down_sync(0xffffffff, acc, off);
    if (lane == 0) out[m] = acc;
  }
}

template <typename T>
__global__ void weighted_gap_backward_kernel(const T* __restrict__ grad, int64_t total, int H, int W, double sigma,
                                             T* __restrict__ out) {
  extern __shared__ unsigned char smem[];
  T* w = reinterpret_cast<T*>(smem);
  load_gap_weights(w, H, W, sigma);
  const int P = H * W;
  WSIS_CUDA_LOOP(i, total) { out[i] = grad[i / P] * w[i % P]; }
}

// Block-wide min and max; every thread gets the result.
template <typename T>
__device__ void block_min_max(T& lo, T& hi) {
  __shared__ T s_lo[32], s_hi[32];
  for (int off = 16; off > 0; off /= 2) {
    lo = min_(lo, __shfl_down_sync(0xffffffff, lo, off));
    hi = max_(hi, __shfl_down_sync(0xffffffff, hi, off));
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // the previous call's readers are done
  if (lane == 0) s_lo[warp] = lo, s_hi[warp] = hi;
  __syncthreads();
  lo = s_lo[0], hi = s_hi[0];
  for (int k = 1; k < blockDim.x / 32; ++k) lo = min_(lo, s_lo[k]), hi = max_(hi, s_hi[k]);
}

template <typename T>
__global__ void cam_pseudo_masks_kernel(const T* __restrict__ cams, int64_t L, int64_t maps, int64_t P, T xi,
                                        T* __restrict__ mean, bool* __restrict__ mask) {
  for (int64_t m = blockIdx.x; m < maps; m += gridDim.x) {
    T* acc = mean + m * P;
    for (int64_t l = 0; l < L; ++l) {
      const T* v = cams + (l * maps + m) * P;
      T lo = T(INFINITY), hi = T(-INFINITY);
      for (int64_t p = threadIdx.x; p < P; p += blockDim.x) lo = min_(lo, v[p]), hi = max_(hi, v[p]);
      block_min_max(lo, hi);
      const T range = hi - lo;
      for (int64_t p = threadIdx.x; p < P; p += blockDim.x) {  // each thread owns its cells: no race
        const T n = range > 0 ? (v[p] - lo) / range : T(0);
        acc[p] = l == 0 ? n : acc[p] + n;
      }
    }
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) {
      acc[p] /= static_cast<T>(L);
      mask[m * P + p] = acc[p] > xi;
    }
  }
}

at::Tensor weighted_gap_cuda(const at::Tensor& x_, double sigma) {
  check_weighted_gap_args(x_, sigma);
  at::cuda::CUDAGuard guard(x_.device());
  auto x = x_.contiguous();
  const int64_t maps = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  auto out = at::empty({x.size(0), x.size(1)}, x.options());
  if (out.numel() == 0) return out;
  TORCH_CHECK(H * W * x.element_size() <= 48 * 1024, "x's T x T grid must hold at most ",
              48 * 1024 / x.element_size(), " cells on CUDA, got ", x.sizes());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "weighted_gap_cuda", [&] {
    weighted_gap_kernel<scalar_t><<<blocks_for(maps * 32), kThreads, H * W * sizeof(scalar_t),
                                    at::cuda::getCurrentCUDAStream()>>>(x.data_ptr<scalar_t>(), maps, H, W, sigma,
                                                                        out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor weighted_gap_backward_cuda(const at::Tensor& grad_, double sigma, int64_t H, int64_t W) {
  TORCH_CHECK(grad_.dim() == 2, "grad must have shape [R, K], got ", grad_.sizes());
  at::cuda::CUDAGuard guard(grad_.device());
  auto grad = grad_.contiguous();
  auto out = at::empty({grad.size(0), grad.size(1), H, W}, grad.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "weighted_gap_backward_cuda", [&] {
    weighted_gap_backward_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, H * W * sizeof(scalar_t),
                                             at::cuda::getCurrentCUDAStream()>>>(
        grad.data_ptr<scalar_t>(), out.numel(), H, W, sigma, out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor> cam_pseudo_masks_cuda(const at::Tensor& cams_, double xi) {
  check_cam_pseudo_masks_args(cams_);
  at::cuda::CUDAGuard guard(cams_.device());
  auto cams = cams_.contiguous();
  const int64_t L = cams.size(0), maps = cams.size(1) * cams.size(2), P = cams.size(3) * cams.size(4);
  auto mean = at::empty(cams.sizes().slice(1), cams.options());
  auto mask = at::empty(cams.sizes().slice(1), cams.options().dtype(at::kBool));
  if (mean.numel() == 0) return {mean, mask};
  AT_DISPATCH_FLOATING_TYPES(cams.scalar_type(), "cam_pseudo_masks_cuda", [&] {
    cam_pseudo_masks_kernel<scalar_t><<<std::min<int64_t>(maps, 65535), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        cams.data_ptr<scalar_t>(), L, maps, P, static_cast<scalar_t>(xi), mean.data_ptr<scalar_t>(),
        mask.data_ptr<bool>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {mean, mask};
}

}  // namespace

TORCH_LIBRARY_IMPL(wsis, CUDA, m) {
  m.impl("weighted_gap", &weighted_gap_cuda);
  m.impl("_weighted_gap_backward", &weighted_gap_backward_cuda);
  m.impl("cam_pseudo_masks", &cam_pseudo_masks_cuda);
}

}  // namespace wsis
