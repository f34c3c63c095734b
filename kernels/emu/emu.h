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
/* Records the range of every L2 prefetch kernels ask for (sl_prefetch_l2) from now on into
 * ptrs[i], sizes[i], in the order they come, up to cap of them (more are counted, not kept); a
 * call with cap 0 (or null arrays) stops recording. Returns how many the recording it ends had
 * (0 if none was on). The arrays must outlive the recording: stop it before they go. */
int sl_emu_prefetch_log(const void **ptrs, unsigned *sizes, int cap);

#ifdef __cplusplus
}
#endif
#endif
