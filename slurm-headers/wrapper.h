/*
 * berth's view of Slurm's C API. build.rs runs bindgen over this file with
 * the include directory of the Slurm that will load the plugin
 * (SLURM_INCLUDE_DIR, default /usr/include): slurm/spank.h for the SPANK
 * types and items, slurm/slurm_version.h for SLURM_VERSION_NUMBER, which
 * becomes the plugin's plugin_version.
 */
#include <slurm/spank.h>
#include <slurm/slurm_version.h>
