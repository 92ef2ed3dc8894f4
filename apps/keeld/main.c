#include <stdio.h>
#include <keel/keel.h>
int main(void)
{
    printf("keeld %s\n", keel_version());
    return 0;
}
