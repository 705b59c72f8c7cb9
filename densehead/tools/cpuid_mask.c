/* Preloaded (LD_PRELOAD) into a Python process by densehead.tools.avx2_numerics: every CPUID the
 * process executes answers as an AVX2-only CPU would, with no AVX-512, no VNNI, no AMX. Libraries
 * that pick their kernels from CPUID and have no switch (onnxruntime's MLAS) then pick the AVX2
 * ones. It uses the kernel's CPUID faulting (arch_prctl ARCH_SET_CPUID, Linux x86-64, a CPU or
 * hypervisor that offers "cpuid_fault"): CPUID raises SIGSEGV, the handler runs the real CPUID
 * with faulting off for that instruction, clears the bits, and steps over it. A development
 * tool; the product never loads it. glibc picked its string functions before this library was
 * loaded: those stay as they are. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

int densehead_cpuid_masked;                  /* 1 once CPUID answers masked; read with ctypes */
static struct sigaction program_segv;        /* the SIGSEGV action the program asked for */
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);

static long set_cpuid_faulting(int on) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, !on); }

/* Intel SDM / AMD APM feature bits past AVX2: r = {eax, ebx, ecx, edx}. */
static void mask(uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
    if (leaf == 7 && subleaf == 0) {
        /* AVX512 F DQ IFMA PF ER CD BW VL */
        r[1] &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        /* AVX512 VBMI VBMI2, GFNI, VAES, VPCLMULQDQ, AVX512 VNNI BITALG VPOPCNTDQ */
        r[2] &= ~(BIT(1) | BIT(6) | BIT(8) | BIT(9) | BIT(10) | BIT(11) | BIT(12) | BIT(14));
        /* AVX512 4VNNIW 4FMAPS VP2INTERSECT, AMX-BF16, AVX512 FP16, AMX-TILE, AMX-INT8 */
        r[3] &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (leaf == 7 && subleaf == 1) {
        r[0] &= ~(BIT(4) | BIT(5) | BIT(23));   /* AVX-VNNI, AVX512 BF16, AVX-IFMA */
        r[3] &= ~(BIT(4) | BIT(5) | BIT(19));   /* AVX-VNNI-INT8, AVX-NE-CONVERT, AVX10 */
    } else if (leaf == 0xd && subleaf == 0) {
        r[0] &= ~(BIT(5) | BIT(6) | BIT(7) | BIT(17) | BIT(18));   /* AVX-512 and AMX state */
    }
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    greg_t *reg = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *at = (const unsigned char *)reg[REG_RIP];
    if (info->si_code == SI_KERNEL && at[0] == 0x0f && at[1] == 0xa2) {   /* CPUID */
        uint32_t leaf = (uint32_t)reg[REG_RAX], subleaf = (uint32_t)reg[REG_RCX], r[4];
        set_cpuid_faulting(0);
        __cpuid_count(leaf, subleaf, r[0], r[1], r[2], r[3]);
        set_cpuid_faulting(1);
        mask(leaf, subleaf, r);
        reg[REG_RAX] = r[0], reg[REG_RBX] = r[1], reg[REG_RCX] = r[2], reg[REG_RDX] = r[3];
        reg[REG_RIP] += 2;
        return;
    }
    /* a real fault: whatever the program installed (Python's faulthandler), else the default */
    if (program_segv.sa_flags & SA_SIGINFO) {
        program_segv.sa_sigaction(sig, info, context);
    } else if (program_segv.sa_handler != SIG_DFL && program_segv.sa_handler != SIG_IGN) {
        program_segv.sa_handler(sig);
    } else {
        struct sigaction fatal = {.sa_handler = SIG_DFL};
        real_sigaction(SIGSEGV, &fatal, NULL);   /* the fault repeats on return, and kills */
    }
}

/* The program's own SIGSEGV handlers (Python's faulthandler, pytest enables it) are kept aside
 * and called for real faults, so that they never replace the CPUID handler. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (!real_sigaction) real_sigaction = dlsym(RTLD_NEXT, "sigaction");
    if (sig != SIGSEGV || !densehead_cpuid_masked) return real_sigaction(sig, act, old);
    if (old) *old = program_segv;
    if (act) program_segv = *act;
    return 0;
}

__attribute__((constructor)) static void start(void) {
    /* Python processes only: a browser or a web server started from one is left alone (their
     * sandboxes forbid the arch_prctl the handler needs). */
    char exe[512] = {0};
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    const char *name = n > 0 ? strrchr(exe, '/') : NULL;
    if (!name || strncmp(name + 1, "python", 6) != 0) return;
    if (!real_sigaction) real_sigaction = dlsym(RTLD_NEXT, "sigaction");
    struct sigaction handler = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO};
    sigemptyset(&handler.sa_mask);
    if (real_sigaction(SIGSEGV, &handler, &program_segv) != 0) return;
    if (set_cpuid_faulting(1) != 0) {
        real_sigaction(SIGSEGV, &program_segv, NULL);
        return;
    }
    densehead_cpuid_masked = 1;
}
