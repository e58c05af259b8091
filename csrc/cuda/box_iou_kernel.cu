// box_iou on CUDA: each block covers a 32 x 32 tile of (boxes1, boxes2) pairs; both tiles of
// boxes sit in shared memory and every thread writes 4 outputs, coalesced along boxes2.
#include <torch/library.h>

#include "../box_math.h"
#include "../op_checks.h"
#include "cuda_utils.cuh"

namespace wsis {
namespace {

constexpr int kTile = 32, kRowsPerThread = 4;

template <typename T>
__global__ void box_iou_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, int64_t N,
                               int64_t M) {
  __shared__ T sa[kTile][5], sb[kTile][5];
  const int64_t batch = blockIdx.z;
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * kTile, j0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  if (tid < kTile && i0 + tid < N) {
    const T* p = a + (batch * N + i0 + tid) * 4;
    sa[tid][0] = p[0], sa[tid][1] = p[1], sa[tid][2] = p[2], sa[tid][3] = p[3];
    sa[tid][4] = (p[2] - p[0]) * (p[3] - p[1]);
  } else if (tid >= kTile && tid < 2 * kTile && j0 + tid - kTile < M) {
    const int t = tid - kTile;
    const T* p = b + (batch * M + j0 + t) * 4;
    sb[t][0] = p[0], sb[t][1] = p[1], sb[t][2] = p[2], sb[t][3] = p[3];
    sb[t][4] = (p[2] - p[0]) * (p[3] - p[1]);
  }
  __syncthreads();
  const int j = threadIdx.x;
  if (j0 + j >= M) return;
  for (int r = 0; r < kRowsPerThread; ++r) {
    const int i = threadIdx.y * kRowsPerThread + r;
    if (i0 + i >= N) return;
    out[(batch * N + i0 + i) * M + j0 + j] =
        box_iou_one(sa[i][0], sa[i][1], sa[i][2], sa[i][3], sa[i][4], sb[j][0], sb[j][1], sb[j][2], sb[j][3], sb[j][4]);
  }
}

at::Tensor box_iou_cuda(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  const bool batched = check_box_iou_args(boxes1, boxes2);
  at::cuda::CUDAGuard guard(boxes1.device());
  auto a = batched ? boxes1.contiguous() : boxes1.unsqueeze(0).contiguous();
  auto b = batched ? boxes2.contiguous() : boxes2.unsqueeze(0).contiguous();
  const int64_t B = a.size(0), N = a.size(1), M = b.size(1);
  auto out = at::empty({B, N, M}, a.options());
  if (out.numel() > 0) {
    dim3 grid((M + kTile - 1) / kTile, (N + kTile - 1) / kTile, B);
    dim3 block(kTile, kTile / kRowsPerThread);
    AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "box_iou_cuda", [&] {
      box_iou_kernel<scalar_t><<<grid, block, 0, at::cuda::getCurrentCUDAStream()>>>(
          a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), N, M);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return batched ? out : out.squeeze(0);
}

}  // namespace

TORCH_LIBRARY_IMPL(wsis, CUDA, m) { m.impl("box_iou", &box_iou_cuda); }

}  // namespace wsis
