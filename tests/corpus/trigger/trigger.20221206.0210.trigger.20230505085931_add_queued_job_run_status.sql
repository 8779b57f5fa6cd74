-- AlterEnum
ALTER TYPE "JobRunStatus" ADD VALUE 'QUEUED';
