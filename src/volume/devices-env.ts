// The environment variables that name LVM commands' devices, apart from the code that reads them
// (src/volume/devices.ts, src/volume/devices-file.ts): `sanbox`'s help names them without loading it.

/** The device list, comma-separated (as `--devices`). */
export const DEVICES_ENV = 'SANBOX_DEVICES';
/** The devices file's path; set and empty, the devices file is turned off. */
export const DEVICES_FILE_ENV = 'SANBOX_DEVICESFILE';
