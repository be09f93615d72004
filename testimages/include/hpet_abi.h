/*
 * hpet_abi.h - the /dev/hpet ioctl ABI the test programs use, written
 * from the interface Linux documents for drivers/char/hpet.c (the values
 * are those of <linux/hpet.h>, which musl does not ship).
 */
#ifndef EMUCKPT_TESTIMAGES_HPET_ABI_H
#define EMUCKPT_TESTIMAGES_HPET_ABI_H

#include <sys/ioctl.h>

struct hpet_info {
	unsigned long hi_ireqfreq; /* interrupt frequency, Hz */
	unsigned long hi_flags;    /* HPET_INFO_PERIODIC when the timer can be periodic */
	unsigned short hi_hpet;
	unsigned short hi_timer;
};

#define HPET_INFO_PERIODIC 0x0010

#define HPET_IE_ON _IO('h', 0x01)  /* interrupt on */
#define HPET_IE_OFF _IO('h', 0x02) /* interrupt off */
#define HPET_INFO _IOR('h', 0x03, struct hpet_info)
#define HPET_EPI _IO('h', 0x04) /* periodic on */
#define HPET_DPI _IO('h', 0x05) /* periodic off */
#define HPET_IRQFREQ _IOW('h', 0x6, unsigned long)

#endif
