-- AlterTable
ALTER TABLE "User" ADD COLUMN     "isOnCloudWaitlist" BOOLEAN NOT NULL DEFAULT false;
