// The emulator behind simt.h: fibers for CUDA threads, a scheduler per block, barriers, warp collectives, cp.async,
// and the few CUDA runtime calls the kernel launchers make.
#include "simt.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace autotrain::simt {

namespace {

// ---- context switching -----------------------------------------------------------------------------------
//
// x86-64: a switch saves the callee-saved registers and the SSE / x87 control words on the current stack and
// loads another stack's (~20 instructions, where glibc's swapcontext also makes a system call for the signal mask;
// the emulated tests switch millions of times). Elsewhere: ucontext.

#if defined(__x86_64__)
extern "C" void autotrain_simt_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .p2align 4
  .globl autotrain_simt_switch
  .type autotrain_simt_switch, @function
autotrain_simt_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size autotrain_simt_switch, .-autotrain_simt_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");
#endif

constexpr size_t kStackBytes = 512 * 1024;  // debug builds keep the kernels' unrolled arrays on the stack
constexpr int kWarp = 32;
constexpr size_t kDynamicSharedBytes = 227 * 1024;  // the per-block maximum of sm_90 (opt-in)

struct Copy {
  void* dst;
  const void* src;
  bool valid;
};

// A thread's asynchronous operations of one kind (cp.async copies, wgmma) in the groups it committed, oldest first,
// and those it has not committed yet; wait(pending, run) runs the oldest groups until `pending` are left.
template <typename Op>
struct AsyncGroups {
  std::vector<Op> open;
  std::deque<std::vector<Op>> committed;
  void commit() {
    committed.push_back(std::move(open));
    open.clear();
  }
  template <typename Run>
  void wait(int pending, Run run) {
    while (static_cast<int>(committed.size()) > pending) {
      for (const Op& op : committed.front()) run(op);
      committed.pop_front();
    }
  }
  bool in_flight() const {
    for (const auto& group : committed)
      if (!group.empty()) return true;
    return false;
  }
};

struct Wgmma {
  float* d;
  int n;
  uint64_t descriptor_a, descriptor_b;
  bool bf16;
  int warp_in_group, lane;
};

struct Fiber {
  Index index;
  int warp = 0, lane = 0;
  bool done = false;
  // While waiting: resumed once *wait_on != wait_value.
  const uint64_t* wait_on = nullptr;
  uint64_t wait_value = 0;
  AsyncGroups<Copy> copies;
  AsyncGroups<Wgmma> wgmma;
  uint8_t* stack = nullptr;
#if defined(__x86_64__)
  void* sp = nullptr;
#else
  ucontext_t context;
#endif
};

// What the lanes of a warp hand each other in a collective.
struct Slot {
  alignas(16) uint8_t bytes[64];
};

struct Warp {
  int arrived = 0;
  uint64_t generation = 0;
  const char* collective = nullptr;  // the one the lanes are arriving at
  Slot slots[kWarp];
};

struct NamedBarrier {
  unsigned count = 0, arrived = 0;
  uint64_t generation = 0;
};

struct Block {
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  int live = 0, arrived = 0;
  uint64_t generation = 0;
  NamedBarrier named[16];  // bar.sync 1-15 (0 is __syncthreads': live, arrived, generation above)
};

Options g_options;
int64_t g_launches = 0;
Launch g_last_launch;
LdmatrixTraffic g_ldmatrix;
const uint8_t* g_watched = nullptr;
std::vector<int64_t> g_reads;  // per watched byte
Index g_block_index, g_block_dim, g_grid_dim;
Block g_block;
Fiber* g_current = nullptr;
const std::function<void()>* g_body = nullptr;
std::vector<uint8_t*> g_stacks;
#if defined(__x86_64__)
void* g_scheduler_sp = nullptr;
#else
ucontext_t g_scheduler;
#endif
alignas(256) uint8_t g_dynamic_shared[kDynamicSharedBytes];

// AddressSanitizer must be told of each switch between the scheduler's stack and a fiber's (so that it checks
// against the right stack's bounds), and a stack's frames that a finished fiber left poisoned must be cleared before
// the stack serves the next block's fiber.
#if defined(__SANITIZE_ADDRESS__)
const void* g_scheduler_stack = nullptr;
size_t g_scheduler_stack_bytes = 0;
void entering_fiber(const Fiber& f, void** fake_stack) {
  __sanitizer_start_switch_fiber(fake_stack, f.stack, kStackBytes);
}
void back_in_scheduler(void* fake_stack) { __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr); }
void leaving_fiber(void** fake_stack) {
  __sanitizer_start_switch_fiber(fake_stack, g_scheduler_stack, g_scheduler_stack_bytes);
}
void back_in_fiber(void* fake_stack) {
  __sanitizer_finish_switch_fiber(fake_stack, &g_scheduler_stack, &g_scheduler_stack_bytes);
}
void clear_stack(uint8_t* stack) { ASAN_UNPOISON_MEMORY_REGION(stack, kStackBytes); }
#else
void entering_fiber(const Fiber&, void**) {}
void back_in_scheduler(void*) {}
void leaving_fiber(void**) {}
void back_in_fiber(void*) {}
void clear_stack(uint8_t*) {}
#endif

Fiber& current() {
  if (g_current == nullptr) fail("device code called outside a kernel launch");
  return *g_current;
}

void yield() {
  Fiber& f = current();
  void* fake_stack = nullptr;
  leaving_fiber(&fake_stack);
#if defined(__x86_64__)
  autotrain_simt_switch(&f.sp, g_scheduler_sp);
#else
  swapcontext(&f.context, &g_scheduler);
#endif
  back_in_fiber(fake_stack);
}

void wait_until_changed(const uint64_t& generation, uint64_t value) {
  Fiber& f = current();
  f.wait_on = &generation;
  f.wait_value = value;
  yield();
  f.wait_on = nullptr;
}

// The current thread arrives at a barrier that releases at `count` arrivals (a warp's collective, __syncthreads, a
// named barrier): the last to arrive goes on at once, the others once the barrier's generation has moved on.
template <typename Count>
void arrive(Count& arrived, Count count, uint64_t& generation) {
  const uint64_t before = generation;
  if (++arrived == count) {
    arrived = 0;
    ++generation;
    return;
  }
  wait_until_changed(generation, before);
}

void run_copy(const Copy& c) {
  if (c.valid)
    std::memcpy(c.dst, c.src, 16);
  else
    std::memset(c.dst, 0, 16);
}

void fiber_main() {
  back_in_fiber(nullptr);
  Fiber& f = current();
  (*g_body)();
  if (f.copies.in_flight()) fail("a thread exited with cp.async copies in flight (no cp.async.wait_group 0)");
  if (!f.copies.open.empty()) fail("a thread exited with uncommitted cp.async copies");
  if (f.wgmma.in_flight()) fail("a thread exited with wgmma in flight (no wgmma.wait_group 0)");
  if (!f.wgmma.open.empty()) fail("a thread exited with uncommitted wgmma");
  f.done = true;
  --g_block.live;
  if (g_block.arrived > 0) fail("__syncthreads: part of the block exited while the rest waits at a barrier");
  for (const NamedBarrier& n : g_block.named)
    if (n.arrived > 0) fail("bar.sync: a thread exited while others wait at a named barrier");
  for (;;) yield();  // the scheduler never resumes a finished fiber
}

#if defined(__x86_64__)
extern "C" void autotrain_simt_entry() { fiber_main(); }
#else
void entry() { fiber_main(); }
#endif

void start_fiber(Fiber& f) {
  uint8_t* top = f.stack + kStackBytes;  // 16-byte aligned (mmap'd)
#if defined(__x86_64__)
  // The frame autotrain_simt_switch pops: control words, r15 ... rbp, the return address (the entry), and above it
  // a zero "return address" of the entry, so that the stack is aligned as after a call.
  auto* words = reinterpret_cast<uint64_t*>(top);
  words[-1] = 0;
  words[-2] = reinterpret_cast<uint64_t>(&autotrain_simt_entry);
  for (int k = 3; k <= 8; ++k) words[-k] = 0;
  auto* control = reinterpret_cast<uint32_t*>(&words[-9]);
  control[0] = 0x1F80;  // MXCSR: exceptions masked, round to nearest
  control[1] = 0x037F;  // x87 control word, the same
  f.sp = &words[-9];
#else
  getcontext(&f.context);
  f.context.uc_stack.ss_sp = f.stack;
  f.context.uc_stack.ss_size = kStackBytes;
  f.context.uc_link = nullptr;
  makecontext(&f.context, entry, 0);
#endif
}

void resume(Fiber& f) {
  g_current = &f;
  void* fake_stack = nullptr;
  entering_fiber(f, &fake_stack);
#if defined(__x86_64__)
  autotrain_simt_switch(&g_scheduler_sp, f.sp);
#else
  swapcontext(&g_scheduler, &f.context);
#endif
  back_in_scheduler(fake_stack);
  g_current = nullptr;
}

uint8_t* stack_for(size_t i) {
  while (g_stacks.size() <= i) {
    // A page below each stack that faults when touched: a fiber that outgrows its stack crashes instead of
    // silently overwriting the stack mapped below it (another thread's locals).
    const size_t guard = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    void* p = mmap(nullptr, kStackBytes + guard, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED || mprotect(p, guard, PROT_NONE) != 0) fail("cannot map a fiber stack");
    g_stacks.push_back(static_cast<uint8_t*>(p) + guard);
  }
  return g_stacks[i];
}

void run_block(unsigned threads) {
  Block& b = g_block;
  b.fibers.assign(threads, Fiber{});
  b.warps.assign((threads + kWarp - 1) / kWarp, Warp{});
  b.live = static_cast<int>(threads);
  b.arrived = 0;
  for (NamedBarrier& n : b.named) n = NamedBarrier{};
  for (unsigned i = 0; i < threads; ++i) {
    Fiber& f = b.fibers[i];
    f.index = Index{i % g_block_dim.x, (i / g_block_dim.x) % g_block_dim.y, i / (g_block_dim.x * g_block_dim.y)};
    f.warp = static_cast<int>(i / kWarp);
    f.lane = static_cast<int>(i % kWarp);
    f.stack = stack_for(i);
    clear_stack(f.stack);
    start_fiber(f);
  }
  // Warp by warp: each warp runs until all its threads wait at a block barrier (or have exited), passing its own
  // collectives on the way, before the next warp starts; so one warp gets as far ahead of the others as the
  // barriers allow, and a race between warps that a missing barrier leaves open shows.
  const bool descending = g_options.order == ThreadOrder::descending;
  const unsigned warps = static_cast<unsigned>(b.warps.size());
  while (b.live > 0) {
    bool ran = false;
    for (unsigned k = 0; k < warps; ++k) {
      const unsigned warp = descending ? warps - 1 - k : k;
      const unsigned begin = warp * kWarp, end = std::min<unsigned>(threads, begin + kWarp);
      for (bool ran_lane = true; ran_lane;) {
        ran_lane = false;
        for (unsigned i = 0; i < end - begin; ++i) {
          Fiber& f = b.fibers[descending ? end - 1 - i : begin + i];
          if (f.done || (f.wait_on != nullptr && *f.wait_on == f.wait_value)) continue;
          ran = ran_lane = true;
          resume(f);
        }
      }
    }
    if (!ran) fail("deadlock: the block's threads wait at different barriers or collectives");
  }
}

// Every lane of the current warp arrives at `collective`; returns once all have (its slot written before).
void warp_barrier(const char* collective) {
  Fiber& f = current();
  Warp& w = g_block.warps[f.warp];
  const int lanes = std::min<int>(kWarp, static_cast<int>(g_block.fibers.size()) - f.warp * kWarp);
  if (lanes != kWarp) fail("a warp collective in a block whose size is not a multiple of 32");
  for (int l = 0; l < kWarp; ++l)
    if (g_block.fibers[f.warp * kWarp + l].done) fail("a warp collective after lanes of the warp exited");
  if (w.arrived == 0)
    w.collective = collective;
  else if (w.collective != collective)
    fail("the lanes of a warp are at different collectives");
  arrive(w.arrived, kWarp, w.generation);
}

Slot& own_slot() { return g_block.warps[current().warp].slots[current().lane]; }
const Slot& slot_of(int lane) { return g_block.warps[current().warp].slots[lane]; }

float to_float(uint16_t bits, bool bf16) {
  if (bf16) {
    const uint32_t word = uint32_t(bits) << 16;
    float value;
    std::memcpy(&value, &word, 4);
    return value;
  }
  __half_raw raw;
  raw.x = bits;
  return __half2float(__half(raw));
}

// The wavefronts of the ldmatrix whose row addresses the current warp's slots hold (see LdmatrixTraffic).
void count_ldmatrix_wavefronts() {
  for (int m = 0; m < 4; ++m) {
    uintptr_t words[32][8];  // per bank, the distinct words it serves
    int count[32] = {};
    int busiest = 0;
    for (int r = 0; r < 8; ++r) {
      uintptr_t row;
      std::memcpy(&row, slot_of(8 * m + r).bytes, sizeof(row));
      for (uintptr_t word = row / 4; word < row / 4 + 4; ++word) {
        const int bank = static_cast<int>(word % 32);
        if (std::find(words[bank], words[bank] + count[bank], word) == words[bank] + count[bank])
          words[bank][count[bank]++] = word;
        busiest = std::max(busiest, count[bank]);
      }
    }
    ++g_ldmatrix.matrices;
    g_ldmatrix.extra_wavefronts += busiest - 1;
  }
}

void check_shared(const void* p, size_t bytes, const char* what) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  const auto window = reinterpret_cast<uintptr_t>(g_dynamic_shared) & ~uintptr_t(0xFFFFFFFF);
  if (address < window || address + bytes - window > 0xFFFFFFFFu) fail(what);
}

// Element (row, k) of a wgmma operand whose descriptor gives the K-major layout with the 128-byte swizzle (see
// simt.h): the start address and the stride between groups of 8 rows are in 16-byte units, the swizzle mode in
// bits 62-63 (1: 128 bytes); the rows of a group are 128 bytes apart, and the swizzle permutes the 16-byte chunks
// by the address's own bits, which is why a kernel's tiles must start 1024-byte aligned. The descriptor keeps 18
// bits of the start address (a GPU's shared memory is smaller than 256 KiB): they name one place in the dynamic
// shared buffer (227 KiB), where the kernels keep their operands.
float wgmma_operand(uint64_t descriptor, int row, int k, bool bf16) {
  if ((descriptor >> 62) != 1) fail("wgmma: only the 128-byte swizzle is emulated");
  if (((descriptor >> 49) & 7) != 0) fail("wgmma: a matrix base offset is not emulated");
  const auto base = reinterpret_cast<uintptr_t>(g_dynamic_shared);
  uintptr_t start = (base & ~uintptr_t(0x3FFFF)) | (uintptr_t(descriptor & 0x3FFF) << 4);
  if (start < base) start += 0x40000;
  const uintptr_t stride = uintptr_t((descriptor >> 32) & 0x3FFF) << 4;
  const uintptr_t linear = start + uintptr_t(row / 8) * stride + uintptr_t(row % 8) * 128 + uintptr_t(2 * k);
  const uintptr_t address = linear ^ (((linear >> 7) & 7) << 4);
  if (address < base || address + 2 > base + kDynamicSharedBytes)
    fail("wgmma: an operand outside dynamic shared memory");
  uint16_t bits;
  std::memcpy(&bits, reinterpret_cast<const void*>(address), 2);
  return to_float(bits, bf16);
}

// One thread's part of a wgmma: D rows 16 w + g (+ 8) of its warp w, columns 8 j + 2 t (+ 1) for each n8 block j,
// each sum over k taken in double and rounded once to fp32 (the hardware's order and precision differ; tests bound
// the difference, as for mma.sync).
void run_wgmma(const Wgmma& op) {
  const int g = op.lane / 4, t = op.lane % 4;
  double a[2][16];  // this thread's two rows of A
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < 16; ++k)
      a[h][k] = wgmma_operand(op.descriptor_a, 16 * op.warp_in_group + g + 8 * h, k, op.bf16);
  for (int j = 0; j < op.n / 8; ++j)
    for (int c = 0; c < 2; ++c) {
      double b[16];  // column 8 j + 2 t + c of B^T
      for (int k = 0; k < 16; ++k) b[k] = wgmma_operand(op.descriptor_b, 8 * j + 2 * t + c, k, op.bf16);
      for (int h = 0; h < 2; ++h) {
        float& d = op.d[4 * j + 2 * h + c];
        double sum = d;
        for (int k = 0; k < 16; ++k) sum += a[h][k] * b[k];
        d = static_cast<float>(sum);
      }
    }
}

}  // namespace

LdmatrixTraffic ldmatrix_traffic() { return g_ldmatrix; }
void reset_ldmatrix_traffic() { g_ldmatrix = LdmatrixTraffic{}; }

void watch(const void* begin, size_t bytes) {
  g_watched = static_cast<const uint8_t*>(begin);
  g_reads.assign(begin == nullptr ? 0 : bytes, 0);
}
std::pair<int64_t, int64_t> watched_reads() {
  if (g_reads.empty()) return {0, 0};
  const auto [fewest, most] = std::minmax_element(g_reads.begin(), g_reads.end());
  return {*fewest, *most};
}
void count_read(const void* p, size_t bytes) {
  const auto* first = static_cast<const uint8_t*>(p);
  const uint8_t* end = g_watched + g_reads.size();
  if (g_watched == nullptr || first + bytes <= g_watched || first >= end) return;
  for (const uint8_t* b = std::max(first, g_watched); b < std::min(first + bytes, end); ++b) ++g_reads[b - g_watched];
}

Options options() { return g_options; }
void set_options(const Options& options) { g_options = options; }
int64_t launches() { return g_launches; }
Launch last_launch() { return g_last_launch; }

const Index& thread_index() { return current().index; }
const Index& block_index() { return g_block_index; }
const Index& block_dim() { return g_block_dim; }
const Index& grid_dim() { return g_grid_dim; }

void fail(const char* what) {
  if (g_current != nullptr)
    std::fprintf(stderr, "simt: %s (block %u,%u,%u thread %u,%u,%u)\n", what, g_block_index.x, g_block_index.y,
                 g_block_index.z, g_current->index.x, g_current->index.y, g_current->index.z);
  else
    std::fprintf(stderr, "simt: %s\n", what);
  std::abort();
}

void launch(dim3 grid, dim3 block, size_t dynamic_shared_bytes, const std::function<void()>& body) {
  if (g_current != nullptr) fail("a launch from device code");
  const unsigned threads = block.x * block.y * block.z;
  if (threads == 0 || threads > 1024) fail("a block of 0 or more than 1024 threads");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) fail("an empty grid");
  if (dynamic_shared_bytes > kDynamicSharedBytes) fail("more dynamic shared memory than a block can have");
  ++g_launches;
  g_last_launch = Launch{grid.x, grid.y, threads, dynamic_shared_bytes};
  std::memset(g_dynamic_shared, 0xFF, kDynamicSharedBytes);
  g_body = &body;
  g_block_dim = Index{block.x, block.y, block.z};
  g_grid_dim = Index{grid.x, grid.y, grid.z};
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned i = 0; i < grid.x; ++i) {  // in the threads' order (a kernel's blocks hand work over, too)
        const unsigned x = g_options.order == ThreadOrder::ascending ? i : grid.x - 1 - i;
        g_block_index = Index{x, y, z};
        run_block(threads);
      }
  g_body = nullptr;
}

void sync_block() {
  Block& b = g_block;
  if (b.live != static_cast<int>(b.fibers.size())) fail("__syncthreads after part of the block exited");
  arrive(b.arrived, b.live, b.generation);
}

void sync_named(unsigned id, unsigned count) {
  Block& b = g_block;
  if (id == 0 || id >= 16) fail("bar.sync: a named barrier's id is 1 to 15 (0 is __syncthreads')");
  if (count == 0 || count % kWarp != 0 || count > b.fibers.size())
    fail("bar.sync: the count must be a multiple of 32, at most the block's threads");
  NamedBarrier& n = b.named[id];
  if (n.arrived == 0)
    n.count = count;
  else if (n.count != count)
    fail("bar.sync: threads name different counts for one barrier");
  arrive(n.arrived, n.count, n.generation);
}

void sync_warp() { warp_barrier("__syncwarp"); }

float shuffle_xor(float value, int lane_mask) {
  std::memcpy(own_slot().bytes, &value, 4);
  warp_barrier("__shfl_xor_sync");
  float result;
  std::memcpy(&result, slot_of((current().lane ^ lane_mask) & (kWarp - 1)).bytes, 4);
  warp_barrier("__shfl_xor_sync (after)");
  return result;
}

float shuffle(float value, int source_lane) {
  std::memcpy(own_slot().bytes, &value, 4);
  warp_barrier("__shfl_sync");
  float result;
  std::memcpy(&result, slot_of(source_lane & (kWarp - 1)).bytes, 4);
  warp_barrier("__shfl_sync (after)");
  return result;
}

// Fragments (PTX ISA, mma.m16n8k16 with .f16 / .bf16 operands), lane = 4 g + t: A {row g, k 2t, 2t+1}, {row g+8,
// k 2t, 2t+1}, {row g, k 2t+8, 2t+9}, {row g+8, k 2t+8, 2t+9}; B {k 2t, 2t+1, n g}, {k 2t+8, 2t+9, n g}; C / D
// {row g, n 2t}, {row g, n 2t+1}, {row g+8, n 2t}, {row g+8, n 2t+1}. The low half of a register is the lower k.
void mma_16x8x16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, bool bf16) {
  uint32_t mine[6] = {a[0], a[1], a[2], a[3], b0, b1};
  std::memcpy(own_slot().bytes, mine, sizeof(mine));
  warp_barrier("mma.sync.m16n8k16");
  auto half_of = [](uint32_t reg, int k) { return static_cast<uint16_t>(k % 2 == 0 ? reg & 0xFFFF : reg >> 16); };
  auto a_at = [&](int row, int k) {
    const int lane = 4 * (row % 8) + (k % 8) / 2;
    const int reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
    uint32_t regs[6];
    std::memcpy(regs, slot_of(lane).bytes, sizeof(regs));
    return to_float(half_of(regs[reg], k), bf16);
  };
  auto b_at = [&](int k, int n) {
    const int lane = 4 * n + (k % 8) / 2;
    uint32_t regs[6];
    std::memcpy(regs, slot_of(lane).bytes, sizeof(regs));
    return to_float(half_of(regs[k >= 8 ? 5 : 4], k), bf16);
  };
  const int g = current().lane / 4, t = current().lane % 4;
  float out[4];
  for (int i = 0; i < 4; ++i) {
    const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + i % 2;
    double sum = d[i];
    for (int k = 0; k < 16; ++k) sum += double(a_at(row, k)) * double(b_at(k, col));
    out[i] = static_cast<float>(sum);
  }
  warp_barrier("mma.sync.m16n8k16 (after)");
  for (int i = 0; i < 4; ++i) d[i] = out[i];
}

// Lanes 8i ... 8i+7 give the addresses of rows 0 ... 7 of matrix i (16 bytes each, 16-byte aligned); lane l gets
// in register i row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1 of matrix i, or with .trans of its transpose.
void load_matrices(uint32_t (&r)[4], const void* row, bool transposed) {
  if (reinterpret_cast<uintptr_t>(row) % 16 != 0) fail("ldmatrix: a row address not 16-byte aligned");
  check_shared(row, 16, "ldmatrix: a row outside shared memory");
  std::memcpy(own_slot().bytes, &row, sizeof(row));
  warp_barrier("ldmatrix.x4");
  const int lane = current().lane;
  if (lane == 0) count_ldmatrix_wavefronts();
  auto element = [&](int matrix, int i, int j) {  // row i, column j of the matrix
    const uint8_t* p;
    std::memcpy(&p, slot_of(8 * matrix + i).bytes, sizeof(p));
    uint16_t bits;
    std::memcpy(&bits, p + 2 * j, 2);
    return bits;
  };
  uint32_t out[4];
  for (int m = 0; m < 4; ++m) {
    const int i = lane / 4, j = 2 * (lane % 4);
    const uint16_t low = transposed ? element(m, j, i) : element(m, i, j);
    const uint16_t high = transposed ? element(m, j + 1, i) : element(m, i, j + 1);
    out[m] = uint32_t(low) | (uint32_t(high) << 16);
  }
  warp_barrier("ldmatrix.x4 (after)");
  for (int m = 0; m < 4; ++m) r[m] = out[m];
}

void copy16_async(void* dst, const void* src, bool valid) {
  if (reinterpret_cast<uintptr_t>(dst) % 16 != 0 || (valid && reinterpret_cast<uintptr_t>(src) % 16 != 0))
    fail("cp.async: an address not 16-byte aligned");
  check_shared(dst, 16, "cp.async: a destination outside shared memory");
  if (valid) count_read(src, 16);
  const Copy c{dst, src, valid};
  if (g_options.copies == CopyTiming::at_issue)
    run_copy(c);
  else
    current().copies.open.push_back(c);
}

void commit_copies() { current().copies.commit(); }
void wait_copies(int pending) { current().copies.wait(pending, run_copy); }

void wgmma_m64k16(float* d, int n, uint64_t descriptor_a, uint64_t descriptor_b, bool bf16) {
  Fiber& f = current();
  if (n % 8 != 0 || n < 8 || n > 256) fail("wgmma: n must be a multiple of 8 from 8 to 256");
  if (g_block.fibers.size() % 128 != 0) fail("wgmma in a block whose size is not a multiple of a warpgroup (128)");
  const Wgmma op{d, n, descriptor_a, descriptor_b, bf16, f.warp % 4, f.lane};
  if (g_options.copies == CopyTiming::at_issue)
    run_wgmma(op);
  else
    f.wgmma.open.push_back(op);
}

void wgmma_commit() { current().wgmma.commit(); }
void wgmma_wait(int pending) { current().wgmma.wait(pending, run_wgmma); }

uint8_t* dynamic_shared() { return g_dynamic_shared; }

uint32_t shared_address(const void* pointer) {
  check_shared(pointer, 1, "a shared address of memory outside the shared window (not __shared__?)");
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(pointer));
}

const void* shared_pointer(uint32_t address) {
  const auto window = reinterpret_cast<uintptr_t>(g_dynamic_shared) & ~uintptr_t(0xFFFFFFFF);
  return reinterpret_cast<const void*>(window | address);
}

}  // namespace autotrain::simt

// ---- the CUDA runtime calls of the launchers --------------------------------------------------------------
// The emulation binary does not link libcudart: these are its only CUDA runtime.

extern "C" {

cudaError_t cudaGetLastError() { return cudaSuccess; }
const char* cudaGetErrorString(cudaError_t) { return "emulated CUDA error"; }
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int) {
  switch (attribute) {
    case cudaDevAttrMultiProcessorCount: *value = autotrain::simt::options().multiprocessors; break;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(autotrain::simt::kDynamicSharedBytes); break;
    default: *value = 0; break;
  }
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute, int) { return cudaSuccess; }
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, const void*, int, size_t) {
  *blocks = 1;
  return cudaSuccess;
}
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int* blocks, const void*, int, size_t,
                                                                   unsigned int) {
  *blocks = 1;
  return cudaSuccess;
}

}  // extern "C"
