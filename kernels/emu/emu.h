/* emu.h — controls of the CUDA emulator, callable from C (tests).
 *
 * Only programs linked with the emulated kernels (sluice_emu) have these. Not thread-safe
 * against a launch in flight: set them before launching.
 */
#ifndef SL_EMU_H
#define SL_EMU_H

#ifdef __cplusplus
extern "C" {
#endif

/* Watchdog: a launch running longer than this is reported as hung (with each block's thread
 * states and source lines) and the process aborts, so CI never hangs. <= 0 restores the
 * default, 60 s (200 s in the ASan build). */
void sl_emu_set_timeout(double seconds);
/* OS threads that run blocks; <= 0 restores the default (online CPUs, at most 16). Takes
 * effect at the first launch; later calls are ignored once the pool exists. */
void sl_emu_set_threads(int n);
/* The number of OS threads that run (or will run) blocks. */
int sl_emu_threads(void);
/* The bytes kernels have asked L2 to prefetch (sl_prefetch_l2) since the process started. */
unsigned long long sl_emu_prefetched_bytes(void);

#ifdef __cplusplus
}
#endif
#endif
